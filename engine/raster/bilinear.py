"""Bilinear sampling at half-pixel centres, one axis at a time: the one resampling rule of the engine.

The ``cv2.resize`` INTER_LINEAR and ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)`` convention: destination pixel d of an axis scaled by s = source/destination
length samples source coordinate (d + 0.5)·s - 0.5, clamped to [0, length - 1]. Indices are global, so
a pixel gets the same arithmetic in any tile. Pure NumPy, no IO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AxisSampling:
    """Bilinear sampling along one axis: destination value = (1 - w)·src[i0] + w·src[i1]."""

    i0: np.ndarray  # int64 source indices
    i1: np.ndarray
    w: np.ndarray  # float32 weight of i1

    @property
    def first(self) -> int:
        return int(self.i0.min())

    @property
    def last(self) -> int:
        return int(self.i1.max())


def bilinear_axis(start: int, stop: int, scale: float, source_length: int) -> AxisSampling:
    """Sampling of destination pixels [start, stop) of an axis; ``scale`` = source/destination length."""
    dest = np.arange(start, stop, dtype=np.float64)
    coord = np.clip((dest + 0.5) * scale - 0.5, 0.0, source_length - 1)
    i0 = np.floor(coord).astype(np.int64)
    i1 = np.minimum(i0 + 1, source_length - 1)
    return AxisSampling(i0, i1, (coord - i0).astype(np.float32))


def output_sampling(start: int, stop: int, out_length: int, working_length: int) -> AxisSampling:
    """Where output pixels [start, stop) sample the working grid (logits: working → output)."""
    return bilinear_axis(start, stop, working_length / out_length, working_length)


def working_sampling(start: int, stop: int, out_length: int, working_length: int) -> AxisSampling:
    """Where working pixels [start, stop) sample the source window (image: source → working)."""
    return bilinear_axis(start, stop, out_length / working_length, out_length)


def resample_bilinear(array: np.ndarray, rows: AxisSampling, cols: AxisSampling, offset=(0, 0)) -> np.ndarray:
    """Separable bilinear sampling of ``array`` (..., H, W) at the given rows/columns.

    ``offset`` (row, col) is the global index of ``array[..., 0, 0]``; sampling indices are global.
    Columns are interpolated first, then rows; the same arithmetic runs for a pixel in any tile.
    """
    r0, r1 = rows.i0 - offset[0], rows.i1 - offset[0]
    c0, c1 = cols.i0 - offset[1], cols.i1 - offset[1]
    # Only the rows this strip reads get interpolated horizontally (scoring a tile strip by strip would
    # otherwise redo the whole tile for every strip).
    first = int(min(r0.min(), r1.min())) if len(r0) else 0
    last = int(max(r0.max(), r1.max())) + 1 if len(r0) else 0
    array, r0, r1 = array[..., first:last, :], r0 - first, r1 - first
    wc = cols.w.astype(array.dtype, copy=False)
    wr = rows.w.astype(array.dtype, copy=False)[:, None]
    # a + (b - a)·w computed in place as ((b - a)·w) + a: the same rounding, fewer temporaries.
    left = array[..., c0]
    horizontal = np.subtract(array[..., c1], left)
    horizontal *= wc
    horizontal += left
    del left
    top = horizontal[..., r0, :]
    out = np.subtract(horizontal[..., r1, :], top)
    out *= wr
    out += top
    return out
