"""Dot products of every pixel's key with its d×d reflect-padded neighbours, as tiled matrix products.

The joint bilateral range term needs, per pixel p and tap t = (i, j) of a d×d kernel (d = 2r + 1),
logits[p, t] = <k_p, k̃_{p + t - r}> with k̃ the reflect-padded keys. One pass per tap (d² = 121
passes over the whole key map for r = 5) is memory-bound: every pass streams the keys twice for
K multiply-adds per pixel. Instead, the pixels of a T×T tile all read neighbours from one
(T + 2r)² window of padded keys, so one GEMM (T² × K) @ (K × (T + 2r)²) gives every dot product the
tile needs (plus some unused ones); the d² wanted columns per pixel are then picked by one gather.
Everything stays channels-last so the GEMM operands and the (…, d²) output are contiguous.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# CHUNK_BYTES also bounds the Gram temporaries of one chunk of tile rows (small: see adaptive_conv).
from engine.upsamplers.adaptive_conv import CHUNK_BYTES, reflect_indices

#: Tile edge in pixels. The Gram of a tile has T² × (T + 2r)² entries; T = 8 with r = 5 computes
#: 324 dot products per pixel for the 121 used, in GEMMs large enough to run near the matmul peak.
TILE = 8


@functools.lru_cache(maxsize=32)
def _tap_columns(tile: int, radius: int) -> torch.Tensor:
    """(T² · d²,) flat indices into a tile's (T², S²) Gram, S = T + 2r: pixel a*T+b, tap i*d+j → window
    position (a + i, b + j)."""
    diameter, span = 2 * radius + 1, tile + 2 * radius
    a = torch.arange(tile).view(tile, 1, 1, 1)
    b = torch.arange(tile).view(1, tile, 1, 1)
    i = torch.arange(diameter).view(1, 1, diameter, 1)
    j = torch.arange(diameter).view(1, 1, 1, diameter)
    pixel = a * tile + b
    window = (a + i) * span + (b + j)
    return (pixel * span * span + window).flatten()


def neighbour_dot_products(
    keys: torch.Tensor,
    radius: int,
    *,
    tile: int = TILE,
    chunk_bytes: int = CHUNK_BYTES,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """keys: (B, H, W, K) channels-last -> (B, H, W, d²) with [b, y, x, i·d + j] = <k[y, x], k̃[y + i, x + j]>,
    k̃ the keys reflect-padded by ``radius`` on both spatial axes (as ``reflect_indices``).

    The GEMMs run in keys' dtype; the result is in ``out_dtype`` (default keys'), converted while the
    picked products are written out (e.g. bf16 products for a float32 softmax, without another pass).
    """
    batch, height, width, key_dim = keys.shape
    diameter, span = 2 * radius + 1, tile + 2 * radius
    tiles_h, tiles_w = -(-height // tile), -(-width // tile)
    rows = reflect_indices(height, radius).to(keys.device)
    cols = reflect_indices(width, radius).to(keys.device)
    padded = keys[:, rows[:, None], cols[None, :]]  # (B, H + 2r, W + 2r, K)
    # Filler rows/columns so that every tile has its full window; their results are cut off at the end.
    extra_h, extra_w = tiles_h * tile - height, tiles_w * tile - width
    padded = F.pad(padded, (0, 0, 0, extra_w, 0, extra_h))
    centres = F.pad(keys, (0, 0, 0, extra_w, 0, extra_h))
    columns = _tap_columns(tile, radius).to(keys.device)
    output = keys.new_empty(batch, tiles_h * tile, tiles_w * tile, diameter * diameter, dtype=out_dtype)
    row_bytes = batch * tiles_w * tile * tile * (span * span + key_dim) * keys.element_size()
    rows_per_chunk = max(1, chunk_bytes // max(1, row_bytes))
    for first in range(0, tiles_h, rows_per_chunk):
        last = min(first + rows_per_chunk, tiles_h)
        n_rows = last - first
        band = padded[:, first * tile : last * tile + 2 * radius]
        # (B, n, tw, K, S, S) windows overlapping by 2r -> (B, n, tw, K, S²)
        windows = band.unfold(1, span, tile).unfold(2, span, tile)
        windows = windows.reshape(batch, n_rows, tiles_w, key_dim, span * span)
        centre = centres[:, first * tile : last * tile].reshape(batch, n_rows, tile, tiles_w, tile, key_dim)
        centre = centre.permute(0, 1, 3, 2, 4, 5).reshape(batch, n_rows, tiles_w, tile * tile, key_dim)
        gram = torch.matmul(centre, windows)  # (B, n, tw, T², S²)
        picked = gram.reshape(batch, n_rows, tiles_w, -1).index_select(-1, columns)
        picked = picked.view(batch, n_rows, tiles_w, tile, tile, diameter * diameter).transpose(2, 3)
        output[:, first * tile : last * tile] = picked.reshape(batch, n_rows * tile, tiles_w * tile, -1)
    return output[:, :height, :width]
