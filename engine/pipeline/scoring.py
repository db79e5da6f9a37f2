"""Per-query logits → class labels and confidence, as SegEarth-OV scores them.

logits × logit scale → softmax over all queries → a class's probability is the max over its synonyms
→ argmax → pixels whose winning probability is below the class's threshold become 0 (unclassified).
With the "margin" kind (ReSeg-CLIP, whose probabilities over raw cosines all sit near 1/Q), the
threshold and the confidence are instead the winning class's raw-logit lead over the runner-up class
(a class's logit: the max over its synonyms); the labels are the same, softmax being monotonic.
Array-level (torch); no GDAL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engine.errors import UserError

THRESHOLD_KINDS = ("probability", "margin", "score")


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


def class_scores(logits: torch.Tensor, query_to_class: Sequence[int]) -> torch.Tensor:
    """(Q, H, W) per-query scores → (C, H, W): each class's max over its synonyms, no softmax."""
    index = torch.as_tensor(list(query_to_class), dtype=torch.long)
    logits = logits.float()
    out = torch.full((int(index.max()) + 1, *logits.shape[1:]), -torch.inf, dtype=logits.dtype)
    expanded = index.view(-1, *([1] * (logits.dim() - 1))).expand_as(logits)
    return out.scatter_reduce(0, expanded, logits, reduce="amax", include_self=True)


def threshold_kind(kind: str) -> str:
    if kind not in THRESHOLD_KINDS:
        raise UserError(f"unknown threshold kind {kind!r}: use one of {', '.join(THRESHOLD_KINDS)}")
    return kind


def class_margins(logits: torch.Tensor, query_to_class: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, H, W) raw logits → (margin, winner), both (H, W): the best class's logit minus the second
    best's (a class's logit is the max over its synonyms; one class: its logit minus nothing, +inf)."""
    index = torch.as_tensor(list(query_to_class), dtype=torch.long)
    n_classes = int(index.max()) + 1
    logits = logits.float()
    expanded = index.view(-1, *([1] * (logits.dim() - 1))).expand_as(logits)
    per_class = torch.full((n_classes, *logits.shape[1:]), -torch.inf, dtype=logits.dtype)
    per_class = per_class.scatter_reduce(0, expanded, logits, reduce="amax", include_self=True)
    if n_classes == 1:
        return torch.full(per_class.shape[1:], torch.inf), torch.zeros(per_class.shape[1:], dtype=torch.long)
    top = per_class.topk(2, dim=0)
    return top.values[0] - top.values[1], top.indices[0]


def score(
    logits: torch.Tensor,
    query_to_class: Sequence[int],
    thresholds: Sequence[float],
    logit_scale: float = ScoringSettings.logit_scale,
    kind: str = "probability",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, H, W) raw logits → labels (H, W) uint8 in 0..C and confidence (H, W) float32.

    ``thresholds`` has one value per class; the confidence is what they compare (``kind``): the winning
    class's probability, or its logit margin over the runner-up (also for pixels under the threshold).
    """
    if kind == "margin":
        confidence, winner = class_margins(logits, query_to_class)
    elif kind == "score":
        # Maps that are probabilities already (SegEarth-OV3): max over synonyms, no softmax.
        confidence, winner = class_scores(logits, query_to_class).max(dim=0)
    else:
        confidence, winner = class_probabilities(logits, query_to_class, logit_scale).max(dim=0)
    limit = torch.as_tensor(list(thresholds), dtype=confidence.dtype)[winner]
    labels = torch.where(confidence < limit, torch.zeros_like(winner), winner + 1)
    return labels.to(torch.uint8), confidence.to(torch.float32)
