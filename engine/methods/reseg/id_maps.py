"""SAM masks → segment id map → one id per CLIP patch.

Id maps are int32 images: 0 = no SAM mask covers the pixel, 1..M = the mask painted there (a later
mask overwrites an earlier one, as in the reference). ``OUTSIDE_ID`` marks crop pixels that lie outside
the prepared window (padding), so padding never shares a segment with real imagery.
"""

from __future__ import annotations

import numpy as np
import torch

OUTSIDE_ID = -1


def patch_majority_ids(id_maps: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Majority segment id of each patch.

    id_maps: (B, H, W) integer, H and W multiples of ``patch_size`` (pixels).
    Returns (B, H / patch, W / patch) int64. Ties go to the smallest id (as ``np.unique`` + argmax would).
    """
    b, h, w = id_maps.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"id map {h}×{w} is not a multiple of the patch size {patch_size}")
    gh, gw = h // patch_size, w // patch_size
    # (B, gh, p, gw, p) → (B·gh·gw, p²): one sorted row of pixel ids per patch, so equal ids form runs.
    rows = (
        id_maps.to(torch.int64)
        .reshape(b, gh, patch_size, gw, patch_size)
        .permute(0, 1, 3, 2, 4)
        .reshape(b * gh * gw, patch_size * patch_size)
        .sort(dim=1)
        .values
    )
    # Run index of every pixel, then each run's length and id. O(p²) memory per patch: comparing all
    # pixel pairs (p⁴) needed 268 MB temporaries per chunk, which fragmented the kept heap.
    starts = torch.ones_like(rows, dtype=torch.bool)
    starts[:, 1:] = rows[:, 1:] != rows[:, :-1]
    run = starts.cumsum(dim=1) - 1
    lengths = torch.zeros_like(rows).scatter_add_(1, run, torch.ones_like(rows))
    run_ids = torch.zeros_like(rows).scatter_(1, run, rows)
    # argmax picks the first longest run: runs are in ascending id order, so ties go to the smallest id.
    longest = lengths.argmax(dim=1, keepdim=True)
    return run_ids.gather(1, longest).reshape(b, gh, gw)


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
