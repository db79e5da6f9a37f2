"""AerOSeg's loss: binary cross-entropy per query at label resolution (+ λ · back-projection)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.methods.aeroseg.training.labels import IGNORE, UNLABELLED


def query_targets(labels: torch.Tensor, query_class: torch.Tensor) -> torch.Tensor:
    """(B, H, W) class numbers 1..K (0/255 none) → (B, Q, H, W) float: 1 where the pixel's class is
    the query's (every synonym of a class is a positive)."""
    return (labels.long().unsqueeze(1) == query_class.view(1, -1, 1, 1)).float()


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, query_class: torch.Tensor, ignore: str):
    """Mean BCE over queries and counted pixels. ``logits``: (B, Q, h, w) at any resolution, resized
    bilinearly to the labels' (B, H, W). ``ignore``: "exclude" leaves unlabelled and ignored pixels out;
    "negative" counts them as negatives for every query (CAT-Seg's rule)."""
    logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
    targets = query_targets(labels, query_class)
    per_pixel = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if ignore == "negative":
        return per_pixel.mean()
    counted = ((labels != UNLABELLED) & (labels != IGNORE)).unsqueeze(1).float()
    return (per_pixel * counted).sum() / (counted.sum() * logits.shape[1]).clamp(min=1.0)
