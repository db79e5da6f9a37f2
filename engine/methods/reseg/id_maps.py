"""SAM masks → segment id map → one id per CLIP patch.

Id maps are int32 images: 0 = no SAM mask covers the pixel, 1..M = the mask painted there (a later
mask overwrites an earlier one, as in the reference). ``OUTSIDE_ID`` marks crop pixels that lie outside
the prepared window (padding), so padding never shares a segment with real imagery.
"""

from __future__ import annotations

import numpy as np
import torch

UNCOVERED_ID = 0
OUTSIDE_ID = -1
# Bound on the (patches × pixels × pixels) comparison tensor built per chunk (elements, ~32 MB bool).
_MAJORITY_CHUNK_ELEMENTS = 32 * 1024 * 1024


def paint_id_map(masks: list[np.ndarray], shape: tuple[int, int], first_id: int = 1) -> np.ndarray:
    """Paint boolean masks (each (H, W)) in order into an (H, W) int32 map; mask k gets id first_id + k.

    Later masks overwrite earlier ones; pixels no mask covers stay UNCOVERED_ID.
    """
    id_map = np.full(shape, UNCOVERED_ID, dtype=np.int32)
    for k, mask in enumerate(masks):
        id_map[mask] = first_id + k
    return id_map


def patch_majority_ids(id_maps: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Majority segment id of each patch.

    id_maps: (B, H, W) integer, H and W multiples of ``patch_size`` (pixels).
    Returns (B, H / patch, W / patch) int64. Ties go to the smallest id (as ``np.unique`` + argmax would).
    """
    b, h, w = id_maps.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"id map {h}×{w} is not a multiple of the patch size {patch_size}")
    gh, gw = h // patch_size, w // patch_size
    # (B, gh, p, gw, p) → (B·gh·gw, p²): one row of pixel ids per patch.
    rows = (
        id_maps.to(torch.int64)
        .reshape(b, gh, patch_size, gw, patch_size)
        .permute(0, 1, 3, 2, 4)
        .reshape(b * gh * gw, patch_size * patch_size)
    )
    n = rows.shape[1]
    chunk = max(1, _MAJORITY_CHUNK_ELEMENTS // (n * n))
    out = torch.empty(rows.shape[0], dtype=torch.int64, device=rows.device)
    for start in range(0, rows.shape[0], chunk):
        part = rows[start : start + chunk]
        # counts[r, i] = how many pixels of patch r share pixel i's id.
        counts = (part[:, :, None] == part[:, None, :]).sum(-1)
        best = counts.max(dim=1, keepdim=True).values
        candidates = torch.where(counts == best, part, torch.iinfo(torch.int64).max)
        out[start : start + chunk] = candidates.min(dim=1).values
    return out.reshape(b, gh, gw)


def crop_id_maps(window_ids: np.ndarray, origins: list[tuple[int, int]], size: tuple[int, int]) -> np.ndarray:
    """Cut crops of ``size`` (h, w) pixels at ``origins`` (row, col) out of window id maps.

    window_ids: (K, H, W) int32, one map per SAM parameter set. Returns (B, K, h, w) int32; pixels
    outside the window (a crop hanging over its edge, or padding) get OUTSIDE_ID.
    """
    k, big_h, big_w = window_ids.shape
    h, w = size
    out = np.full((len(origins), k, h, w), OUTSIDE_ID, dtype=np.int32)
    for i, (r, c) in enumerate(origins):
        r0, c0 = max(r, 0), max(c, 0)
        r1, c1 = min(r + h, big_h), min(c + w, big_w)
        if r1 > r0 and c1 > c0:
            out[i, :, r0 - r : r1 - r, c0 - c : c1 - c] = window_ids[:, r0:r1, c0:c1]
    return out
