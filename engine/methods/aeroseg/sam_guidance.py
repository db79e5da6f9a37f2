"""Frozen SAM image-encoder features after chosen blocks, for inputs of any size (AerOSeg step 4).

segment-anything's ``ImageEncoderViT`` is run block by block with its absolute position embedding
resized (bicubic) to the input's patch grid; its windowed blocks pad themselves and its global blocks
interpolate their relative positions, so any multiple of the patch size works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sam_block_features(
    encoder: nn.Module, images: torch.Tensor, layers: tuple[int, ...]
) -> list[torch.Tensor]:
    """(B, 3, H, W) SAM-normalised images → one (B, D, H/16, W/16) map per index in ``layers``."""
    x = encoder.patch_embed(images)  # (B, h, w, D)
    if encoder.pos_embed is not None:
        grid = x.shape[1:3]
        position = encoder.pos_embed
        if position.shape[1:3] != grid:
            position = F.interpolate(
                position.permute(0, 3, 1, 2), size=grid, mode="bicubic", align_corners=False
            ).permute(0, 2, 3, 1)
        x = x + position
    wanted = {index: None for index in layers}
    last = max(layers)
    for index, block in enumerate(encoder.blocks[: last + 1]):
        x = block(x)
        if index in wanted:
            wanted[index] = x.permute(0, 3, 1, 2)
    return [wanted[index] for index in layers]


class GuidanceProjection(nn.Module):
    """SAM features → spatial-refinement guidance: Conv3×3 → ReLU → LayerNorm over channels."""

    def __init__(self, channels: int, out: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, out, 3, padding=1)
        self.norm = nn.LayerNorm(out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv(features))
        return self.norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class DecoderGuidance(nn.Module):
    """SAM features at the patch grid → decoder guidance at ×``scale``: ConvTranspose then Conv3×3
    (CAT-Seg's guidance path for its CLIP layers, fed with SAM's)."""

    def __init__(self, channels: int, width: int, out: int, scale: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(channels, width, scale, stride=scale)
        self.conv = nn.Conv2d(width, out, 3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(self.up(features))
