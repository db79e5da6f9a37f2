"""SAM id maps for an image window of any size: split into SAM windows, cache, stitch.

A pipeline window can be far larger than SAM's 1024-px input; running SAM on it whole would shrink the
imagery and lose small segments. So the window is split evenly into SAM windows no larger than
``sam_window_px`` (default 896 px = 4 × 4 reference tiles, just under SAM's 1024-px input so nothing is
shrunk), each segmented once for all parameter sets and cached; their id maps are stitched with ids
offset per SAM window so segments from different SAM windows never share an id. A segment is thus cut
at SAM-window borders, as the reference cuts it at every 224-px tile border, but 16 × less often.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence

import numpy as np

from engine.runtime.mapped_arrays import mapped_zeros
from engine.sam.generator import WindowMaskGenerator
from engine.sam.mask_cache import WindowMaskCache, settings_fingerprint, window_digest
from engine.sam.parameter_sets import SamParameterSet
from engine.sam.stats import SegmentationCost

#: Longest side of a SAM window in pixels (SAM's encoder input is 1024 px; 896 = 4 reference tiles).
DEFAULT_SAM_WINDOW_PX = 896


def even_splits(length: int, max_piece: int) -> list[tuple[int, int]]:
    """Split [0, length) into the fewest near-equal pieces of at most ``max_piece``: [(start, stop)]."""
    pieces = max(1, math.ceil(length / max_piece))
    bounds = [round(i * length / pieces) for i in range(pieces + 1)]
    return list(itertools.pairwise(bounds))


def grid_splits(start: int, length: int, piece: int) -> list[tuple[int, int]]:
    """Split [0, length) at the multiples of ``piece`` of the global coordinate ``start + x``: the SAM
    windows of every read window then fall on one global grid, so a grid cell read whole by two
    overlapping windows gets identical pixels, identical (cached) masks and identical logits."""
    cuts = [0]
    first = (start // piece + 1) * piece - start
    cuts.extend(range(first, length, piece))
    cuts.append(length)
    return list(itertools.pairwise(cuts))


class SamWindowMasks:
    """(K, H, W) int32 id maps for RGB windows, one map per SAM parameter set in ``set_indices``."""

    def __init__(
        self,
        sam_model,
        parameter_sets: Sequence[SamParameterSet],
        set_indices: Sequence[int],
        *,
        sam_window_px: int = DEFAULT_SAM_WINDOW_PX,
        cache: WindowMaskCache | None = None,
        cost: SegmentationCost | None = None,
        model_identity: str = "",
    ) -> None:
        if sam_window_px < 32:
            raise ValueError(f"SAM window of {sam_window_px} px is too small")
        self.cost = cost if cost is not None else SegmentationCost()
        self.generator = WindowMaskGenerator(sam_model, parameter_sets, self.cost)
        self.set_indices = tuple(set_indices)
        self.sam_window_px = sam_window_px
        self.cache = cache if cache is not None else WindowMaskCache()
        self._fingerprint = settings_fingerprint(
            {
                "sam": model_identity,
                "sets": [parameter_sets[i].as_dict() for i in self.set_indices],
            }
        )

    def sam_window_id_maps(self, window: np.ndarray) -> np.ndarray:
        """Id maps of one SAM window ((H, W, 3) uint8), from the cache when these pixels were seen."""
        key = f"{window_digest(window)}-{self._fingerprint}"
        maps = self.cache.get(key)
        if maps is not None:
            self.cost.sam_windows_cached += 1
            return maps
        maps = self.generator.id_maps(window, self.set_indices)
        self.cost.sam_windows_computed += 1
        self.cache.put(key, maps)
        return maps

    def id_maps(self, window: np.ndarray, origin: tuple[int, int] | None = None) -> np.ndarray:
        """window: (H, W, 3) uint8 RGB of any size → (K, H, W) int32, ids unique across SAM windows.

        ``origin``: the window's (row, col) in a global pixel frame (e.g. the working raster); given,
        SAM windows are cut on the global ``sam_window_px`` grid (grid_splits), else split evenly."""
        started = time.perf_counter()
        height, width = window.shape[:2]
        # Lives through the whole tile, past its CLIP temporaries: outside the heap (runtime.mapped_arrays).
        out = mapped_zeros((len(self.set_indices), height, width), np.int32)
        offsets = np.zeros(len(self.set_indices), dtype=np.int64)
        cached_seconds = self.cost.sam_seconds
        if origin is None:
            rows, cols = even_splits(height, self.sam_window_px), even_splits(width, self.sam_window_px)
        else:
            rows = grid_splits(int(origin[0]), height, self.sam_window_px)
            cols = grid_splits(int(origin[1]), width, self.sam_window_px)
        for r0, r1 in rows:
            for c0, c1 in cols:
                maps = self.sam_window_id_maps(np.ascontiguousarray(window[r0:r1, c0:c1]))
                covered = maps > 0
                shifted = maps.astype(np.int64) + offsets[:, None, None]
                out[:, r0:r1, c0:c1] = np.where(covered, shifted, 0)
                offsets += maps.reshape(len(self.set_indices), -1).max(axis=1)
        if offsets.max(initial=0) >= np.iinfo(np.int32).max:
            raise OverflowError("too many SAM segments in one window for int32 ids")
        # Time spent outside the generator (cache reads, stitching) is SAM time too.
        self.cost.sam_seconds = cached_seconds + (time.perf_counter() - started)
        return out
