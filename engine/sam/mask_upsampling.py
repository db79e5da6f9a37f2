"""SAM's mask post-processing as one separable linear map instead of two image resizes.

segment-anything's ``Sam.postprocess_masks`` resizes every 256² low-resolution mask logit to the encoder's
1024² input (bilinear), cuts off the padding and resizes the rest to the original window (bilinear again).
For a prompt batch on an 896² window that is 60 masks × 1024² intermediate values (250 MB) written and
read again, and took 0.1-0.45 s per batch on the 2-core CPU.

Both resizes are linear and act on rows and columns separately, so the whole chain is
``R_h · M · R_wᵀ`` with R_h (H_out × 256) = (second resize) · (first resize, rows kept after cropping), and
likewise R_w. The 1-D matrices are taken from ``F.interpolate`` itself (applied to an identity), so the
weights are PyTorch's, and composed in float64; only the rounding of the sums differs from upstream.
Every output row mixes at most three neighbouring low-resolution rows, so the row product is done in
blocks of output rows against just the low-resolution rows they need.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from engine.runtime.onednn_linear import linear

#: Output rows per block of the banded row product (64 output rows read about 20 low-resolution rows).
ROWS_PER_BLOCK = 64


def resize_matrix(in_len: int, out_len: int) -> torch.Tensor:
    """(out_len, in_len) float64 matrix of ``F.interpolate(..., mode="bilinear", align_corners=False)``
    along one axis: its columns are the resized unit vectors.

    Built in float32 on purpose: the kernel computes source positions and weights in float32 for float32
    (and half-precision) masks, and at 1000-px sizes those differ from exact ones by about 1e-4."""
    identity = torch.eye(in_len, dtype=torch.float32).view(1, 1, in_len, in_len)
    # The second axis keeps its length: scale 1, so it passes through unchanged.
    resized = F.interpolate(identity, size=(out_len, in_len), mode="bilinear", align_corners=False)
    return resized[0, 0].double()


@functools.lru_cache(maxsize=32)
def _axis_map(low_res: int, encoder_size: int, kept: int, out_len: int) -> torch.Tensor:
    """float64 (out_len, low_res): resize to ``encoder_size``, keep the first ``kept``, resize to
    ``out_len``."""
    return resize_matrix(kept, out_len) @ resize_matrix(low_res, encoder_size)[:kept]


@functools.lru_cache(maxsize=32)
def _row_blocks(
    axis: tuple[int, int, int, int], rows_per_block: int
) -> tuple[tuple[int, int, int, int], ...]:
    """For the ``_axis_map(*axis)`` matrix: (first_out, stop_out, first_in, stop_in) per block of output
    rows, with the input rows that block reads. Cached: every prompt batch of a crop needs the same."""
    matrix = _axis_map(*axis)
    blocks = []
    for first in range(0, matrix.shape[0], rows_per_block):
        stop = min(first + rows_per_block, matrix.shape[0])
        used = matrix[first:stop].abs().sum(dim=0).nonzero().flatten()
        low, high = (int(used.min()), int(used.max()) + 1) if used.numel() else (0, 1)
        blocks.append((first, stop, low, high))
    return tuple(blocks)


def upsample_masks(
    masks: torch.Tensor, encoder_size: int, input_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """The result of ``Sam.postprocess_masks`` (to rounding): masks (B, C, h, w) → (B, C, *original_size)."""
    batch, channels, low_h, low_w = masks.shape
    row_axis = (low_h, encoder_size, int(input_size[0]), int(original_size[0]))
    rows = _axis_map(*row_axis)
    cols = _axis_map(low_w, encoder_size, int(input_size[1]), int(original_size[1]))
    rows, cols = rows.to(masks.device, masks.dtype), cols.to(masks.device, masks.dtype)
    # Columns first, densely on the small maps: (B·C·h, w) → (B·C·h, W_out).
    wide = linear(masks.reshape(-1, low_w), cols, None).view(batch * channels, low_h, cols.shape[0])
    out = masks.new_empty(batch * channels, rows.shape[0], cols.shape[0])
    for first, stop, low, high in _row_blocks(row_axis, ROWS_PER_BLOCK):
        torch.matmul(rows[first:stop, low:high], wide[:, low:high], out=out[:, first:stop])
    return out.view(batch, channels, rows.shape[0], cols.shape[0])


class _FusedPostprocess:
    """Bound in place of ``Sam.postprocess_masks`` (a plain callable: not a submodule, no state)."""

    def __init__(self, sam: nn.Module) -> None:
        self.encoder_size = sam.image_encoder.img_size

    def __call__(self, masks, input_size, original_size):
        return upsample_masks(masks, self.encoder_size, tuple(input_size), tuple(original_size))


def install_fused_mask_upsampling(sam: nn.Module) -> None:
    """Make ``sam.postprocess_masks`` the fused map (idempotent); the model's parameters are untouched."""
    if not isinstance(sam.__dict__.get("postprocess_masks"), _FusedPostprocess):
        sam.__dict__["postprocess_masks"] = _FusedPostprocess(sam)


def uninstall_fused_mask_upsampling(sam: nn.Module) -> None:
    """Back to segment-anything's own two resizes."""
    sam.__dict__.pop("postprocess_masks", None)
