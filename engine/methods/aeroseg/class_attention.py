"""Class refinement: linear attention (feature map elu + 1) across the class axis at each position.

q, k = Linear(concat(norm(x), text guidance)); v = Linear(norm(x)); no positional embedding, so the
class order does not matter. The class sequence is padded to ``pad`` tokens with a learned token (its
text guidance zero) so that the attention sees a fixed-length sequence, as CAT-Seg does; during
training the maps are average-pooled by ``pool`` first and the update is upsampled back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPSILON = 1e-6


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(N, heads, L, d) q, (N, heads, S, d) k, v → (N, heads, L, d):
    out_l = Σ_s φ(q_l)·φ(k_s) v_s / (Σ_s φ(q_l)·φ(k_s) + ε), φ = elu + 1."""
    q, k = F.elu(q) + 1, F.elu(k) + 1
    kv = torch.einsum("nhsd,nhse->nhde", k, v)
    normaliser = 1.0 / (torch.einsum("nhld,nhd->nhl", q, k.sum(dim=2)) + EPSILON)
    return torch.einsum("nhld,nhde,nhl->nhle", q, kv, normaliser)


class ClassAttentionBlock(nn.Module):
    """Pre-norm block over class sequences: (N, T, C) + text guidance (N, T, G) → (N, T, C)."""

    def __init__(self, dim: int, guidance: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim + guidance, dim)
        self.k = nn.Linear(dim + guidance, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        count, length, dim = x.shape
        y = self.norm1(x)
        joined = torch.cat([y, guidance], dim=-1)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(count, length, self.heads, dim // self.heads).transpose(1, 2)

        out = linear_attention(heads(self.q(joined)), heads(self.k(joined)), heads(self.v(y)))
        x = x + self.proj(out.transpose(1, 2).reshape(count, length, dim))
        return x + self.mlp(self.norm2(x))


class ClassRefinement(nn.Module):
    """forward(x: (B, C, T, H, W), text: (B, T, G)) → (B, C, T, H, W)."""

    def __init__(self, dim: int, guidance: int, heads: int, mlp_ratio: float, pad: int, pool: int):
        super().__init__()
        self.pad, self.pool = pad, pool
        self.block = ClassAttentionBlock(dim, guidance, heads, mlp_ratio)
        self.pad_token = nn.Parameter(torch.zeros(1, 1, dim))

    def sequences(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The block over every position's class sequence, padding added and removed: (B, C, T, h, w)."""
        batch, dim, classes, height, width = x.shape
        tokens = x.permute(0, 3, 4, 2, 1).reshape(batch * height * width, classes, dim)
        guide = text.repeat_interleave(height * width, dim=0)
        extra = self.pad - classes
        if extra > 0:
            tokens = torch.cat([tokens, self.pad_token.expand(len(tokens), extra, dim)], dim=1)
            guide = torch.cat([guide, guide.new_zeros(len(guide), extra, guide.shape[-1])], dim=1)
        tokens = self.block(tokens, guide)[:, :classes]
        return tokens.view(batch, height, width, classes, dim).permute(0, 4, 3, 1, 2)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.pool > 1):
            return self.sequences(x, text)
        batch, dim, classes, height, width = x.shape
        flat = x.permute(0, 2, 1, 3, 4).reshape(batch * classes, dim, height, width)
        pooled = F.avg_pool2d(flat, self.pool)
        small = pooled.view(batch, classes, dim, *pooled.shape[-2:]).permute(0, 2, 1, 3, 4)
        update = self.sequences(small, text) - small
        update = update.permute(0, 2, 1, 3, 4).reshape(batch * classes, dim, *pooled.shape[-2:])
        update = F.interpolate(update, size=(height, width), mode="bilinear", align_corners=False)
        return x + update.view(batch, classes, dim, height, width).permute(0, 2, 1, 3, 4)
