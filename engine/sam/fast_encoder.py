"""SAM's image encoder made faster in place: attention without the full attention matrix, and a contiguous
residual stream (``ContiguousPatchEmbed``).

segment-anything's ``Attention`` builds softmax(q kᵀ · s + B) as a dense (batch·heads, N, N) tensor, B the
decomposed relative-position bias B[(h, w), (h', w')] = Rh[h, w, h'] + Rw[h, w, w']. In the four global
blocks N = 64² = 4096, so each of those tensors (scores, scores + bias, softmax) is 805 MB for ViT-B's
12 heads: a 1024² pass allocated ~10 GB of fresh pages and spent as long in page faults as in arithmetic
(13-21 s per ViT-B pass on the 2-core CPU).

``RelPosAttention`` computes the same thing one block of queries at a time with
``scaled_dot_product_attention``, whose additive mask is that block's rows of B, assembled from the small
Rh and Rw by broadcasting. Softmax is per query row, so splitting the rows changes nothing but the
rounding. The projections stay the wrapped module's own (so a faster CPU linear swapped into them applies).

On CPU in float32 the global blocks go another way: PyTorch's fused CPU attention multiplies through MKL,
which takes its AVX2 path on AMD processors (about 110 GFLOP/s here with the mask), so each head's two
products go through oneDNN instead (engine.runtime.onednn_linear), one block of query rows at a time, with the
bias added and the softmax taken in between: about twice as fast on the 2-core AMD CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, PatchEmbed, get_rel_pos
from torch import nn

from engine.runtime.onednn_linear import onednn_route_applies

#: Upper bound on one query block's bias (batch·heads × rows × N values): 128 MB of float32, reused from
#: block to block (ViT-B global block: 12 heads × 682 rows × 4096 keys; larger blocks ran no faster).
BIAS_VALUES_PER_BLOCK = 32 * 2**20
#: Query rows per oneDNN product in the CPU path (a 256 × 4096 score block is 4 MB: cache-sized).
ONEDNN_QUERY_ROWS = 256
#: Below this many tokens (the 14 × 14 windows) per-head products cost more in calls than they save.
ONEDNN_MIN_TOKENS = 1024


def onednn_relpos_attention(q, k, v, rel_h, rel_w, scale: float) -> torch.Tensor:
    """softmax(q kᵀ · scale + Rh + Rw) v per batch item and head, products through oneDNN.

    q, k, v: (B, heads, N, C) float32 CPU; rel_h (B, heads, N, H, 1) and rel_w (B, heads, N, 1, W) with
    H·W = N. Returns (B, N, heads, C), the layout the output projection reads."""
    batch, heads, tokens, channels = q.shape
    product = torch.ops.mkldnn._linear_pointwise
    out = q.new_empty(batch, tokens, heads, channels)
    for b in range(batch):
        for h in range(heads):
            queries = (q[b, h] * scale).contiguous()
            keys, values_t = k[b, h].contiguous(), v[b, h].t().contiguous()
            for first in range(0, tokens, ONEDNN_QUERY_ROWS):
                rows = slice(first, min(first + ONEDNN_QUERY_ROWS, tokens))
                scores = product(queries[rows], keys, None, "none", [], "")  # (rows, N)
                grid = scores.view(scores.shape[0], rel_h.shape[-2], rel_w.shape[-1])
                grid.add_(rel_h[b, h, rows]).add_(rel_w[b, h, rows])
                out[b, rows, h] = product(scores.softmax(dim=-1), values_t, None, "none", [], "")
    return out


class RelPosAttention(nn.Module):
    """Drop-in for segment-anything's image-encoder ``Attention`` (same parameters and state-dict keys)."""

    def __init__(self, upstream: Attention) -> None:
        super().__init__()
        self.num_heads = upstream.num_heads
        self.scale = upstream.scale
        self.qkv = upstream.qkv
        self.proj = upstream.proj
        self.use_rel_pos = upstream.use_rel_pos
        if self.use_rel_pos:
            self.rel_pos_h = upstream.rel_pos_h
            self.rel_pos_w = upstream.rel_pos_w

    def _relative_bias(self, q: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rh (BH, H, W, H) and Rw (BH, H, W, W) from the unscaled queries q (BH, H·W, C)."""
        rel_h = get_rel_pos(height, height, self.rel_pos_h)  # (H, H, C)
        rel_w = get_rel_pos(width, width, self.rel_pos_w)  # (W, W, C)
        grid_q = q.reshape(q.shape[0], height, width, q.shape[-1])
        return (
            torch.einsum("bhwc,hkc->bhwk", grid_q, rel_h),
            torch.einsum("bhwc,wkc->bhwk", grid_q, rel_w),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        tokens, heads = height * width, self.num_heads
        # (B, heads, N, C): in 4-D, scaled_dot_product_attention takes its fused CPU kernel even with a
        # mask (in 3-D it falls back to the unfused one, 2.5x slower here).
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        if not self.use_rel_pos:
            mixed = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            rel_h, rel_w = self._relative_bias(q.reshape(batch * heads, tokens, -1), height, width)
            rel_h = rel_h.reshape(batch, heads, tokens, height, 1)
            rel_w = rel_w.reshape(batch, heads, tokens, 1, width)
            if tokens >= ONEDNN_MIN_TOKENS and onednn_route_applies(q, self.qkv.weight, None):
                mixed = onednn_relpos_attention(q, k, v, rel_h, rel_w, self.scale)
                return self.proj(mixed.view(batch, height, width, -1))
            rows = max(1, BIAS_VALUES_PER_BLOCK // (batch * heads * tokens))
            mixed = torch.empty_like(q)
            for first in range(0, tokens, rows):
                block = slice(first, min(first + rows, tokens))
                bias = (rel_h[:, :, block] + rel_w[:, :, block]).view(batch, heads, -1, tokens)
                mixed[:, :, block] = F.scaled_dot_product_attention(
                    q[:, :, block], k, v, attn_mask=bias.to(q.dtype), scale=self.scale
                )
        return self.proj(mixed.permute(0, 2, 1, 3).reshape(batch, height, width, -1))


class ContiguousPatchEmbed(nn.Module):
    """segment-anything's ``PatchEmbed`` (same ``proj``, same state-dict keys) returning a contiguous
    (B, H, W, C) tensor instead of a permuted view of the convolution's (B, C, H, W) output.

    Every residual add keeps its first operand's memory layout, so upstream's view makes the whole
    residual stream channels-first in memory, and each block's LayerNorms then read a strided tensor:
    ≈ 6 ms each instead of ≈ 0.6 ms on ViT-B at 1024² (24 of them, ≈ 3 % of a pass). Same values."""

    def __init__(self, upstream: PatchEmbed) -> None:
        super().__init__()
        self.proj = upstream.proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


def install_fast_encoder(sam: nn.Module) -> int:
    """Replace every image-encoder ``Attention`` of ``sam`` by a ``RelPosAttention`` and its
    ``PatchEmbed`` by a ``ContiguousPatchEmbed``, sharing their parameters; returns how many modules were
    replaced (0 when already done)."""
    encoder = sam.image_encoder
    replaced = 0
    if type(getattr(encoder, "patch_embed", None)) is PatchEmbed:
        encoder.patch_embed = ContiguousPatchEmbed(encoder.patch_embed)
        replaced += 1
    for block in getattr(encoder, "blocks", []):
        if type(block.attn) is Attention:
            block.attn = RelPosAttention(block.attn)
            replaced += 1
    return replaced
