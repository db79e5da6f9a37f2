"""Position embeddings of a ViT resized to any patch grid (non-square too), class token kept."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Added to the target grid size when deriving the bicubic scale factor, as SegEarth-OV (after DINO)
#: does to dodge floating-point rounding of the output size. It also fixes where the bicubic samples
#: fall, so it is kept to reproduce the reference exactly.
SCALE_FACTOR_OFFSET = 0.1


def interpolate_positional_embedding(
    positional_embedding: torch.Tensor, grid: tuple[int, int]
) -> torch.Tensor:
    """Resize a (1 + n*n, D) learned position embedding to a (gh, gw) patch grid -> (1 + gh*gw, D).

    Row 0 (the class token's embedding) is kept as is; the n x n patch embeddings are resized bicubically
    (align_corners=False) with SegEarth-OV's scale factors ((g + 0.1) / n). At the native grid the input is
    returned unchanged.
    """
    grid_h, grid_w = grid
    n_patches = positional_embedding.shape[0] - 1
    side = math.isqrt(n_patches)
    if side * side != n_patches:
        raise ValueError(f"position embedding of {n_patches} patches is not a square grid")
    if (grid_h, grid_w) == (side, side):
        return positional_embedding
    dim = positional_embedding.shape[1]
    patches = positional_embedding[1:].float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    resized = F.interpolate(
        patches,
        scale_factor=((grid_h + SCALE_FACTOR_OFFSET) / side, (grid_w + SCALE_FACTOR_OFFSET) / side),
        mode="bicubic",
        align_corners=False,
    )
    if resized.shape[-2:] != (grid_h, grid_w):  # defensive: the offset makes this unreachable for sane sizes
        raise RuntimeError(f"position embedding resized to {tuple(resized.shape[-2:])}, wanted {grid}")
    resized = resized.permute(0, 2, 3, 1).reshape(grid_h * grid_w, dim).to(positional_embedding.dtype)
    return torch.cat([positional_embedding[:1], resized])
