"""Spatial refinement: Swin blocks per class whose queries and keys also see SAM guidance.

Per class map (B·T, H, W, C): window attention (no relative position bias), the second block of a pair
on windows shifted by ``shift`` with Swin's mask so that tokens wrapped around by the shift do not
attend across the seam. q, k = Linear(concat(norm(x), guidance)); v = Linear(norm(x)).
"""

from __future__ import annotations

import torch
from torch import nn

MASKED = -1e4  # added to attention logits between tokens that were not neighbours before the shift


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(N, H, W, C) → (N·nh·nw, window², C); H, W multiples of ``window``."""
    n, height, width, channels = x.shape
    x = x.view(n, height // window, window, width // window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, channels)


def window_reverse(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of ``window_partition``: (N·nh·nw, window², C) → (N, H, W, C)."""
    channels = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


def shift_mask(height: int, width: int, window: int, shift: int, device=None) -> torch.Tensor:
    """(nh·nw, window², window²) additive mask for windows of the grid rolled by ``-shift``: 0 where two
    tokens come from the same region of the unrolled grid, MASKED elsewhere."""
    regions = torch.zeros(1, height, width, 1, device=device)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in bands:
        for cols in bands:
            regions[:, rows, cols, :] = label
            label += 1
    ids = window_partition(regions, window).squeeze(-1)  # (windows, window²)
    same = ids[:, :, None] == ids[:, None, :]
    return torch.where(same, 0.0, MASKED)


class GuidedWindowAttention(nn.Module):
    """Multi-head attention inside windows; q, k from features + guidance, v from features only."""

    def __init__(self, dim: int, guidance: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim + guidance, dim)
        self.k = nn.Linear(dim + guidance, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, guidance: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (Nw, L, C), guidance: (Nw, L, G), mask: (windows, L, L) or None, Nw a multiple of windows."""
        count, length, dim = x.shape
        head_dim = dim // self.heads
        joined = torch.cat([x, guidance], dim=-1)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(count, length, self.heads, head_dim).transpose(1, 2)

        q, k, v = heads(self.q(joined)), heads(self.k(joined)), heads(self.v(x))
        logits = (q * head_dim**-0.5) @ k.transpose(-1, -2)
        if mask is not None:
            windows = mask.shape[0]
            logits = logits.view(count // windows, windows, self.heads, length, length) + mask[None, :, None]
            logits = logits.view(count, self.heads, length, length)
        out = logits.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(count, length, dim))


class GuidedSwinBlock(nn.Module):
    """Pre-norm Swin block: x + attention(norm(x), guidance), then x + MLP(norm(x)). (N, H, W, C)."""

    def __init__(self, dim: int, guidance: int, heads: int, window: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attention = GuidedWindowAttention(dim, guidance, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[1:3]
        if height % self.window or width % self.window:
            raise ValueError(f"a {height}x{width} grid is not a multiple of the Swin window {self.window}")
        shortcut = x
        y, g = self.norm1(x), guidance
        mask = None
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
            g = torch.roll(g, (-self.shift, -self.shift), dims=(1, 2))
            mask = shift_mask(height, width, self.window, self.shift, device=x.device).to(x.dtype)
        out = self.attention(window_partition(y, self.window), window_partition(g, self.window), mask)
        out = window_reverse(out, self.window, height, width)
        if self.shift:
            out = torch.roll(out, (self.shift, self.shift), dims=(1, 2))
        x = shortcut + out
        return x + self.mlp(self.norm2(x))


class SpatialRefinement(nn.Module):
    """Two guided Swin blocks (unshifted, shifted) over each class map.

    forward(x: (B, C, T, H, W), guidance: (B, G, H, W)) → (B, C, T, H, W).
    """

    def __init__(self, dim: int, guidance: int, heads: int, window: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                GuidedSwinBlock(dim, guidance, heads, window, 0, mlp_ratio),
                GuidedSwinBlock(dim, guidance, heads, window, shift, mlp_ratio),
            ]
        )

    def forward(self, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        batch, dim, classes, height, width = x.shape
        tokens = x.permute(0, 2, 3, 4, 1).reshape(batch * classes, height, width, dim)
        g = guidance.permute(0, 2, 3, 1).repeat_interleave(classes, dim=0)
        for block in self.blocks:
            tokens = block(tokens, g)
        return tokens.view(batch, classes, height, width, dim).permute(0, 4, 1, 2, 3)
