"""The modified last ViT block of training-free dense CLIP methods, as one mechanism.

Every mode computes q, k, v with the block's own in-projection of ``ln_1(x)`` and returns
``out_proj(weights @ v)``; the residual and the MLP of the block are dropped (SegEarth-OV's
``ignore_residual=True``, used for every mode including vanilla). Modes differ only in the attention
weights, described as data in ``ATTENTION_MODES``:

- a sum of softmaxes, one per similarity term (``qq`` = softmax(q qᵀ s), ``kk``, ``vv``, ``qk``),
  s = head_dim^-0.5;
- ``identity``: each token attends to itself only (MaskCLIP), so the output is ``out_proj(v)``;
- an optional Gaussian neighbourhood bias added to the (single) term's logits before its softmax (NACLIP).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import UserError
from engine.runtime.onednn_linear import linear

#: NACLIP's Gaussian neighbourhood standard deviation, in patches.
NACLIP_GAUSSIAN_STD = 1.0


@dataclass(frozen=True)
class AttentionMode:
    """What the last block's attention weights are made of.

    ``terms``: similarity terms whose softmaxes are summed ("qq", "kk", "vv", "qk"); empty = identity.
    ``neighbourhood_std``: if set, a Gaussian of the patch-grid distance (std in patches) is added to the
    logits of each term before its softmax; the class token gets no bias.
    """

    terms: tuple[str, ...]
    neighbourhood_std: float | None = None
    description: str = ""


ATTENTION_MODES: dict[str, AttentionMode] = {
    "segearth": AttentionMode(
        ("qq", "kk", "vv"), description="SegEarth-OV: softmax(qq)+softmax(kk)+softmax(vv)"
    ),
    "clearclip": AttentionMode(("qq",), description="ClearCLIP: softmax(qq)"),
    "sclip": AttentionMode(("qq", "kk"), description="SCLIP: softmax(qq)+softmax(kk)"),
    "maskclip": AttentionMode((), description="MaskCLIP: identity attention, out_proj(v)"),
    "naclip": AttentionMode(
        ("kk",),
        neighbourhood_std=NACLIP_GAUSSIAN_STD,
        description="NACLIP: softmax(kk + Gaussian neighbourhood)",
    ),
    "vanilla": AttentionMode(
        ("qk",), description="CLIP's own attention softmax(qk), residual and MLP dropped"
    ),
}


def attention_mode(name: str) -> AttentionMode:
    """The mode called ``name`` (case-insensitive), or a UserError listing the known ones."""
    mode = ATTENTION_MODES.get(name.lower())
    if mode is None:
        raise UserError(f"unknown attention mode {name!r}; choose one of {', '.join(ATTENTION_MODES)}")
    return mode


_bias_cache: dict[tuple, torch.Tensor] = {}


def gaussian_neighbourhood_bias(
    grid: tuple[int, int], std: float, *, device=None, dtype=torch.float32
) -> torch.Tensor:
    """(1 + gh*gw)² additive attention bias: exp(-|p_i - p_j|² / (2 std²)) between patch positions.

    Row and column 0 (class token) are zero. Patches are numbered row-major, as ViT flattens them.
    """
    key = (tuple(grid), float(std), str(device), dtype)
    bias = _bias_cache.get(key)
    if bias is None:
        grid_h, grid_w = grid
        rows = torch.arange(grid_h, dtype=torch.float64).repeat_interleave(grid_w)
        cols = torch.arange(grid_w, dtype=torch.float64).repeat(grid_h)
        squared = (rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2
        bias = torch.zeros(grid_h * grid_w + 1, grid_h * grid_w + 1, dtype=torch.float64)
        bias[1:, 1:] = torch.exp(-squared / (2 * std**2))
        bias = bias.to(device=device, dtype=dtype)
        if len(_bias_cache) > 16:  # a handful of crop shapes recur; keep the cache small
            _bias_cache.clear()
        _bias_cache[key] = bias
    return bias


def attention_weights(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mode: AttentionMode, grid: tuple[int, int]
) -> torch.Tensor:
    """Attention weights (..., N, N) for per-head q, k, v of shape (..., N, head_dim) (identity mode: eye)."""
    scale = q.shape[-1] ** -0.5
    operands = {"q": q, "k": k, "v": v}
    if not mode.terms:
        return torch.eye(q.shape[-2], dtype=q.dtype, device=q.device).expand(*q.shape[:-1], q.shape[-2])
    bias = None
    if mode.neighbourhood_std is not None:
        bias = gaussian_neighbourhood_bias(grid, mode.neighbourhood_std, device=q.device, dtype=q.dtype)
    weights = None
    for term in mode.terms:
        left, right = operands[term[0]], operands[term[1]]
        logits = torch.matmul(left, right.transpose(-1, -2)) * scale
        if bias is not None:
            logits = logits + bias
        term_weights = F.softmax(logits, dim=-1)
        weights = term_weights if weights is None else weights + term_weights
    return weights


def modified_last_block(
    block: nn.Module, x: torch.Tensor, mode: AttentionMode, grid: tuple[int, int]
) -> torch.Tensor:
    """The last block's output under ``mode``: ``out_proj(weights @ v)`` from ``ln_1(x)``, (B, N, D) -> same.

    ``block`` is an open_clip ResidualAttentionBlock (``ln_1`` and an ``nn.MultiheadAttention`` ``attn``);
    ``x`` is batch-first, token 0 the class token, then the ``grid`` patches row-major.
    """
    attn: nn.MultiheadAttention = block.attn
    batch, tokens, width = x.shape
    heads = attn.num_heads
    head_dim = width // heads
    qkv = linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)  # oneDNN for CPU fp32
    # (B, N, 3D) -> three (B, heads, N, head_dim)
    q, k, v = qkv.view(batch, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    if mode.terms:
        mixed = torch.matmul(attention_weights(q, k, v, mode, grid), v)
    else:
        mixed = v  # identity attention: skip the N x N product
    mixed = mixed.transpose(1, 2).reshape(batch, tokens, width)
    return attn.out_proj(mixed)
