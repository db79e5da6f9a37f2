"""Attention-aware upsampling decoder (AerOSeg step 7, after OVRS): ×2, ×2 with modulated guidance.

Each stage: ConvTranspose per class map; from the class-averaged upsampled features a channel attention
A_c (global average, Conv1×1 → guidance channels) and a spatial attention A_s (channel mean, Conv1×1
1 → 1), no sigmoid; guidance G' = A_c·G + A_s·G + G; concat(per-class features, G'), DoubleConv.
"""

from __future__ import annotations

import torch
from torch import nn


class DoubleConv(nn.Module):
    """(Conv3×3 → GroupNorm → ReLU) × 2."""

    def __init__(self, channels: int, out: int, groups: int = 16):
        super().__init__()
        middle = out
        self.body = nn.Sequential(
            nn.Conv2d(channels, middle, 3, padding=1, bias=False),
            nn.GroupNorm(max(1, middle // groups), middle),
            nn.ReLU(inplace=True),
            nn.Conv2d(middle, out, 3, padding=1, bias=False),
            nn.GroupNorm(max(1, out // groups), out),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class AttentionUpStage(nn.Module):
    """(B·T, C, h, w) features, (B, G, 2h, 2w) guidance, T → (B·T, out, 2h, 2w)."""

    def __init__(self, channels: int, guidance: int, out: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(channels, channels - guidance, 2, stride=2)
        self.channel = nn.Conv2d(channels - guidance, guidance, 1)
        self.spatial = nn.Conv2d(1, 1, 1)
        self.conv = DoubleConv(channels, out)

    def forward(self, x: torch.Tensor, guidance: torch.Tensor, classes: int) -> torch.Tensor:
        x = self.up(x)
        mean = x.view(-1, classes, *x.shape[1:]).mean(dim=1)  # (B, C', H, W) class-averaged
        channel = self.channel(mean.mean(dim=(2, 3), keepdim=True))  # (B, G, 1, 1)
        spatial = self.spatial(mean.mean(dim=1, keepdim=True))  # (B, 1, H, W)
        modulated = channel * guidance + spatial * guidance + guidance
        modulated = modulated.repeat_interleave(classes, dim=0)
        return self.conv(torch.cat([x, modulated], dim=1))


class UpsamplingDecoder(nn.Module):
    """forward(x: (B, C, T, h, w), guidance: [(B, G1, 2h, 2w), (B, G2, 4h, 4w)]) → (B, T, 4h, 4w) logits."""

    def __init__(self, hidden: int, dims: tuple[int, int], guidance: tuple[int, int]):
        super().__init__()
        self.stage1 = AttentionUpStage(hidden, guidance[0], dims[0])
        self.stage2 = AttentionUpStage(dims[0], guidance[1], dims[1])
        self.head = nn.Conv2d(dims[1], 1, 3, padding=1)

    def forward(self, x: torch.Tensor, guidance: list[torch.Tensor]) -> torch.Tensor:
        batch, channels, classes, height, width = x.shape
        y = x.permute(0, 2, 1, 3, 4).reshape(batch * classes, channels, height, width)
        y = self.stage1(y, guidance[0], classes)
        y = self.stage2(y, guidance[1], classes)
        return self.head(y).view(batch, classes, *y.shape[-2:])
