"""Per-query logits → class labels and confidence, as SegEarth-OV scores them.

logits × logit scale → softmax over all queries → a class's probability is the max over its synonyms
→ argmax → pixels whose winning probability is below the class's threshold become 0 (unclassified).
Array-level (torch); no GDAL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ScoringSettings:
    # CLIP's learned temperature for OpenAI ViT-B/16 is 100; SegEarth-OV (after SCLIP) uses 50.
    logit_scale: float = 50.0
    # SegEarth-OV's probability threshold for OpenEarthMap (0.3 LoveDA, 0.4 iSAID); per-class values in
    # the vocabulary override it.
    threshold: float = 0.1


def class_probabilities(
    logits: torch.Tensor, query_to_class: Sequence[int], logit_scale: float
) -> torch.Tensor:
    """(Q, H, W) raw logits → (C, H, W) class probabilities (max over each class's synonyms)."""
    probs = torch.softmax(logits.float() * logit_scale, dim=0)
    index = torch.as_tensor(list(query_to_class), dtype=torch.long)
    n_classes = int(index.max()) + 1
    if n_classes == len(query_to_class):  # no synonyms: a permutation-free identity
        return probs
    out = torch.full((n_classes, *probs.shape[1:]), -1.0, dtype=probs.dtype)
    # scatter_reduce "amax" takes the max over queries that share a class.
    expanded = index.view(-1, *([1] * (probs.dim() - 1))).expand_as(probs)
    return out.scatter_reduce(0, expanded, probs, reduce="amax", include_self=True)


def score(
    logits: torch.Tensor,
    query_to_class: Sequence[int],
    thresholds: Sequence[float],
    logit_scale: float = ScoringSettings.logit_scale,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, H, W) raw logits → labels (H, W) uint8 in 0..C and confidence (H, W) float32.

    ``thresholds`` has one probability per class; the confidence is the winning class's probability
    (also for pixels that fall under the threshold).
    """
    probs = class_probabilities(logits, query_to_class, logit_scale)
    confidence, winner = probs.max(dim=0)
    limit = torch.as_tensor(list(thresholds), dtype=confidence.dtype)[winner]
    labels = torch.where(confidence < limit, torch.zeros_like(winner), winner + 1)
    return labels.to(torch.uint8), confidence.to(torch.float32)
