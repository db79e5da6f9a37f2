"""The correlation volume and its per-class embedding (AerOSeg step 3, CAT-Seg's cost volume)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def correlation_volume(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cosine of every rotation's pixel features with every prompt's class features.

    image: (B, R, E, H, W) dense features (any norm); text: (T, P, E) or (B, T, P, E), L2-normalised
    → (B, R·P, T, H, W), channel index r·P + p.
    """
    image = F.normalize(image, dim=2)
    if text.dim() == 3:
        text = text.unsqueeze(0).expand(image.shape[0], -1, -1, -1)
    volume = torch.einsum("brehw,btpe->brpthw", image, text)
    batch, rotations, prompts, classes, height, width = volume.shape
    return volume.reshape(batch, rotations * prompts, classes, height, width)


class CorrelationEmbedding(nn.Module):
    """One Conv2d (R·P → hidden, k×k) applied to each class's correlation map: (B, R·P, T, H, W) →
    (B, hidden, T, H, W). Shared across classes, so any number of classes works."""

    def __init__(self, channels: int, hidden: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, hidden, kernel, padding=kernel // 2)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        batch, channels, classes, height, width = volume.shape
        per_class = volume.permute(0, 2, 1, 3, 4).reshape(batch * classes, channels, height, width)
        embedded = self.conv(per_class)
        return embedded.view(batch, classes, -1, height, width).permute(0, 2, 1, 3, 4)
