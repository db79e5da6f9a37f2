"""Resample the source window onto the working grid: the 8-bit RGB image the model sees.

Bilinear at half-pixel centres (``cv2.resize`` INTER_LINEAR, as the reference resizes its images), at
exact global coordinates, so any working pixel gets the same value whichever tile asks for it. Only
the source rows and columns that bilinear sampling touches are read, in strips, so memory stays bounded
even for a working grid much coarser than the raster.
"""

from __future__ import annotations

import numpy as np

from engine.raster.bilinear import AxisSampling, resample_bilinear, working_sampling
from engine.raster.grid import OutputGrid, WorkingGrid
from engine.raster.reader import RasterSource
from engine.raster.stretch import Stretch

# Working rows resampled per source read (bounds the read buffer).
ROWS_PER_STRIP = 128


def _local(sampling: AxisSampling, used: np.ndarray) -> AxisSampling:
    """Re-index a sampling into positions of ``used`` (the sorted unique source indices read)."""
    return AxisSampling(np.searchsorted(used, sampling.i0), np.searchsorted(used, sampling.i1), sampling.w)


def working_image(
    source: RasterSource,
    stretch: Stretch,
    grid: OutputGrid,
    working: WorkingGrid,
    rows: tuple[int, int],
    cols: tuple[int, int],
) -> np.ndarray:
    """(3, h, w) uint8 working-grid image for working rows [r0, r1) and columns [c0, c1)."""
    col_sampling = working_sampling(cols[0], cols[1], grid.width, working.width)
    used_cols = np.unique(np.concatenate([col_sampling.i0, col_sampling.i1]))
    local_cols = _local(col_sampling, used_cols)
    out = np.empty((3, rows[1] - rows[0], cols[1] - cols[0]), dtype=np.uint8)
    for r0 in range(rows[0], rows[1], ROWS_PER_STRIP):
        r1 = min(r0 + ROWS_PER_STRIP, rows[1])
        row_sampling = working_sampling(r0, r1, grid.height, working.height)
        used_rows = np.unique(np.concatenate([row_sampling.i0, row_sampling.i1]))
        data, valid = source.read_rows_cols(used_rows + grid.window.yoff, used_cols + grid.window.xoff)
        values = stretch.to_float(data, valid)
        sampled = resample_bilinear(values, _local(row_sampling, used_rows), local_cols)
        out[:, r0 - rows[0] : r1 - rows[0]] = np.clip(np.rint(sampled), 0, 255).astype(np.uint8)
    return out
