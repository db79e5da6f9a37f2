"""Adaptive (per-pixel kernel) convolution over a bicubically upsampled source, as dense matrix products.

FeatUp's joint bilateral step computes, for every high-res pixel (y, x),

    out[c, y, x] = Σ_{i,j < d} K[y, x, i, j] · P[c, y + i, x + j],   P = reflect_pad(bicubic(src), r),

with d = 2r + 1. The reference unfolds P into a (C, d², H, W) tensor (12 GB for C=512, d=11 at 224²)
and does a memory-bound per-pixel matrix-vector product. But P is a *linear* function of the low-res
``src`` (separable bicubic weights, reflection is an index remap), so each output pixel is a weighted sum
of a small window of low-res pixels: out[:, y, x] = Σ_{a,b} M[y, x, a, b] · src[:, a, b], with
M[y, x] = Ry[y]ᵀ K[y, x] Rx[x] (Ry, Rx the padded bicubic rows for y's and x's taps). Grouping output
pixels into T×T tiles that share one low-res window turns the work into batched GEMMs
(T² × L²) @ (L² × C) with L ≈ (T + 2r) / 2 + 3, far fewer taps per pixel than d² on the high-res grid,
and nothing of size C × d² × H × W is ever built. Same result to float rounding.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

#: Output tile edge (high-res pixels) sharing one low-res window: 8 keeps windows small (≈12² low-res taps
#: for r = 5) while the GEMMs stay large enough to run at matrix-unit speed.
TILE = 8
#: Upper bound on the temporaries of one chunk of tile rows, in bytes. Small on purpose: under the
#: kept heap (engine.runtime.allocator) 40-60 MB chunk temporaries found no hole to reuse and grew the heap,
#: so a 16x raster peaked 1.27x a tile's RSS; at 4 MB 1.14x, a tile 0.1-0.2 GB lower, no slower on CPU.
#: (A GPU batch of many crops still makes each chunk large: one tile row is the minimum.)
CHUNK_BYTES = 4 * 2**20

_matrix_cache: dict[tuple, torch.Tensor] = {}


def bicubic_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """(out_size, in_size) float64 weights W with bicubic(x) = W @ x along one axis.

    Obtained by resizing an identity with ``F.interpolate`` (bicubic, align_corners=False), so it holds
    PyTorch's exact coefficients and border clamping; PyTorch's 2-D bicubic is the product of two such.
    """
    key = (in_size, out_size)
    matrix = _matrix_cache.get(key)
    if matrix is None:
        eye = torch.eye(in_size, dtype=torch.float64).view(in_size, 1, in_size, 1)
        columns = F.interpolate(eye, size=(out_size, 1), mode="bicubic", align_corners=False)
        matrix = columns.view(in_size, out_size).T.contiguous()
        _matrix_cache[key] = matrix
    return matrix


def reflect_indices(size: int, radius: int) -> torch.Tensor:
    """Source index of each of the size + 2·radius positions of a reflect-padded axis (edge not repeated).

    Identical to ``F.pad(mode="reflect")`` when radius < size; beyond that the reflection continues
    periodically (PyTorch refuses), so tiny edge crops still work.
    """
    positions = torch.arange(-radius, size + radius).abs()
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    positions = positions % period
    return torch.where(positions > size - 1, period - positions, positions)


def reflect_pad(images: torch.Tensor, radius: int) -> torch.Tensor:
    """Reflect-pad the last two axes of (..., H, W) by ``radius`` (see ``reflect_indices``)."""
    height, width = images.shape[-2:]
    rows = reflect_indices(height, radius).to(images.device)
    cols = reflect_indices(width, radius).to(images.device)
    return images[..., rows[:, None], cols[None, :]]


@functools.lru_cache(maxsize=64)
def _tap_windows(in_size: int, out_size: int, radius: int, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output position the taps' low-res weights restricted to its tile's window.

    Returns R (n_tiles·tile, d, L) float64 with R[y, i, a] = weight of low-res index start[y // tile] + a
    in padded high-res position y + i, and start (n_tiles,) long. Rows past out_size are zero.
    Cached: the same few sizes recur for every crop (callers must not modify the result).
    """
    diameter = 2 * radius + 1
    padded = bicubic_matrix(in_size, out_size)[reflect_indices(out_size, radius)]  # (out + 2r, in)
    n_tiles = -(-out_size // tile)
    spans = []
    for index in range(n_tiles):
        first, last = index * tile, min((index + 1) * tile, out_size) + 2 * radius
        used = padded[first:last].ne(0).any(0).nonzero().flatten()
        spans.append((int(used.min()), int(used.max())))
    length = min(in_size, max(high - low + 1 for low, high in spans))
    starts = torch.tensor([min(low, in_size - length) for low, _ in spans])
    window = torch.zeros(n_tiles * tile, diameter, length, dtype=torch.float64)
    for y in range(out_size):
        start = int(starts[y // tile])
        window[y] = padded[y : y + diameter, start : start + length]
    return window, starts


def adaptive_conv_upsampled(
    source: torch.Tensor,
    kernel: torch.Tensor,
    radius: int,
    *,
    tile: int = TILE,
    chunk_bytes: int = CHUNK_BYTES,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Adaptive convolution of the reflect-padded bicubic upsample of ``source`` with per-pixel kernels.

    source: (B, C, h, w) low-res features; kernel: (B, H, W, d, d) with d = 2·radius + 1, one kernel per
    high-res pixel (tap (i, j) reads padded row y + i, column x + j). Returns (B, C, H, W), channels-last
    memory, in ``out_dtype`` (default source's; the products run in source's dtype and the conversion
    happens while the tiles are written out, so a bf16 upsample can end in float32 at no extra pass).
    """
    batch, channels, in_h, in_w = source.shape
    _, out_h, out_w, diameter, _ = kernel.shape
    if diameter != 2 * radius + 1 or kernel.shape[0] != batch:
        raise ValueError(
            f"kernel {tuple(kernel.shape)} does not fit source {tuple(source.shape)}, radius {radius}"
        )
    device, dtype = source.device, source.dtype
    rows, row_starts = _tap_windows(in_h, out_h, radius, tile)
    cols, col_starts = _tap_windows(in_w, out_w, radius, tile)
    rows, cols = rows.to(device, dtype), cols.to(device, dtype)
    length_h, length_w = rows.shape[-1], cols.shape[-1]
    tiles_h, tiles_w = len(row_starts), len(col_starts)
    # Zero kernels for the filler pixels of partial edge tiles; their outputs are cut off at the end.
    kernel = kernel.to(dtype)
    if tiles_w * tile != out_w or tiles_h * tile != out_h:  # padding copies the whole kernel: only if needed
        kernel = F.pad(kernel, (0, 0, 0, 0, 0, tiles_w * tile - out_w, 0, tiles_h * tile - out_h))
    col_index = (col_starts[:, None] + torch.arange(length_w)).to(device)  # (tiles_w, Lw)
    batch_offsets = (torch.arange(batch, device=device) * (in_h * in_w)).view(batch, 1)
    # Channels-last so that gathered windows and written tiles are runs of contiguous C-vectors (free when
    # the source is the channels-last output of a previous step).
    source_last = source.permute(0, 2, 3, 1).contiguous()
    tile_row_bytes = batch * tiles_w * (tile * tile + channels) * length_h * length_w * source.element_size()
    tile_rows_per_chunk = max(1, chunk_bytes // max(1, tile_row_bytes))
    output = source.new_empty(batch, tiles_h * tile, tiles_w * tile, channels, dtype=out_dtype)
    for first in range(0, tiles_h, tile_rows_per_chunk):
        last = min(first + tile_rows_per_chunk, tiles_h)
        n_rows = last - first
        pixel_rows = slice(first * tile, last * tile)
        # M[b, y, x, a, c] = Σ_ij rows[y, i, a] · K[b, y, x, i, j] · cols[x, j, c]
        partial = torch.einsum("byxij,xjc->byxic", kernel[:, pixel_rows], cols)
        mixing = torch.einsum("yia,byxic->byxac", rows[pixel_rows], partial)
        mixing = mixing.reshape(batch, n_rows, tile, tiles_w, tile, length_h * length_w)
        mixing = mixing.permute(0, 1, 3, 2, 4, 5).reshape(batch, n_rows, tiles_w, tile * tile, -1)
        row_index = (row_starts[first:last, None] + torch.arange(length_h)).to(device)  # (n_rows, Lh)
        # Pixel numbers of every window position -> one index_select of whole C-vectors (the fast path;
        # a 4-D advanced-index gather computes an offset per element and is several times slower).
        pixels = row_index.view(n_rows, 1, length_h, 1) * in_w + col_index.view(1, tiles_w, 1, length_w)
        pixels = (batch_offsets + pixels.flatten()).flatten()
        windows = source_last.view(-1, channels).index_select(0, pixels)
        windows = windows.view(batch, n_rows, tiles_w, length_h * length_w, channels)
        tiles = torch.matmul(mixing, windows)  # (B, n_rows, tiles_w, T², C)
        tiles = tiles.view(batch, n_rows, tiles_w, tile, tile, channels).transpose(2, 3)
        output[:, pixel_rows] = tiles.reshape(batch, n_rows * tile, tiles_w * tile, channels)
    # A (B, C, H, W) view of channels-last memory: the next step reads it channels-last for free.
    return output[:, :out_h, :out_w].permute(0, 3, 1, 2)
