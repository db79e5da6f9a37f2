"""Semantic back-projection (SBP): refined class features → a reconstruction of SAM's features.

Used only by the training loss. Input: the refined features concatenated over classes (zero-padded to
``max_classes``), per position; three Linear layers with GELU; output SAM's channel width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import UserError


class SemanticBackProjection(nn.Module):
    """forward((B, C, T, h, w)) → (B, D_sam, h, w)."""

    def __init__(self, hidden: int, max_classes: int, width: int, out: int):
        super().__init__()
        self.hidden, self.max_classes = hidden, max_classes
        self.mlp = nn.Sequential(
            nn.Linear(hidden * max_classes, width),
            nn.GELU(),
            nn.Linear(width, width),
            nn.GELU(),
            nn.Linear(width, out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, classes, height, width = x.shape
        if classes > self.max_classes:
            raise UserError(
                f"{classes} training queries, but this architecture's back-projection takes at most "
                f"{self.max_classes}: train on fewer classes or synonyms"
            )
        tokens = x.permute(0, 3, 4, 2, 1).reshape(batch, height, width, classes * channels)
        tokens = F.pad(tokens, (0, (self.max_classes - classes) * channels))
        return self.mlp(tokens).permute(0, 3, 1, 2)


def back_projection_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean (1 − cosine) over positions between (B, D, h, w) maps; the target is detached."""
    return (1 - F.cosine_similarity(reconstruction, target.detach(), dim=1)).mean()
