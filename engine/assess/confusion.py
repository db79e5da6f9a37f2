"""The confusion matrix of a map against its reference, accumulated block by block.

Memory follows the block (``BLOCK`` × ``BLOCK`` pixels of a few integer arrays), never the raster. The
same pass counts the map's class areas over the whole assessed extent (the strata of the area
estimators) and every pixel left out, by reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .correspondence import IGNORED, Correspondence
from .reference import NO_REFERENCE

#: Side of a block read at once, pixels (a 1024² block of int64 codes is 8 MiB).
BLOCK = 1024


@dataclass
class ConfusionCounts:
    """Counts over the assessed extent; K classes = the map's classes, then "unclassified"."""

    classes: int
    pixels: np.ndarray = None  # (K, K) int64, rows = reference, columns = map
    area_m2: np.ndarray = None  # (K, K) float64 ground area of the same pixels (None: no ground unit)
    map_pixels: np.ndarray = None  # (K,) map pixels per class over the whole extent (strata)
    map_area_m2: np.ndarray = None  # (K,)
    unmatched: dict[int, int] = field(default_factory=dict)  # reference code → pixels
    ignored_pixels: int = 0
    no_reference_pixels: int = 0
    map_nodata_pixels: int = 0
    map_unnamed_pixels: int = 0  # map values without a class name

    def __post_init__(self) -> None:
        k = self.classes
        self.pixels = np.zeros((k, k), np.int64)
        self.area_m2 = np.zeros((k, k), np.float64)
        self.map_pixels = np.zeros(k, np.int64)
        self.map_area_m2 = np.zeros(k, np.float64)


def map_value_lookup(values_to_index: dict[int, int], unclassified_index: int) -> np.ndarray:
    """(65536,) int64: map raster value → class index, 0 → unclassified, unnamed values → -1."""
    lookup = np.full(65536, -1, np.int64)
    lookup[0] = unclassified_index
    for value, index in values_to_index.items():
        lookup[value] = index
    return lookup


def add_block(
    counts: ConfusionCounts,
    map_values: np.ndarray,
    map_valid: np.ndarray,
    reference_codes: np.ndarray,
    lookup: np.ndarray,
    correspondence: Correspondence,
    row_area_m2: np.ndarray | None,
) -> None:
    """Add one block: ``map_values`` (H, W) integers, ``map_valid`` (H, W) bool, ``reference_codes`` (H, W)
    int64 with NO_REFERENCE where unknown, ``row_area_m2`` (H,) ground area of a pixel in each row."""
    k = counts.classes
    map_index = np.where(map_valid, lookup[np.clip(map_values, 0, 65535).astype(np.int64)], -2)
    counts.map_nodata_pixels += int((map_index == -2).sum())
    counts.map_unnamed_pixels += int((map_index == -1).sum())
    mapped = map_index >= 0
    pixel_area = None if row_area_m2 is None else np.broadcast_to(row_area_m2[:, None], map_values.shape)
    counts.map_pixels += np.bincount(map_index[mapped], minlength=k)
    if pixel_area is not None:
        counts.map_area_m2 += np.bincount(map_index[mapped], weights=pixel_area[mapped], minlength=k)
    has_reference = mapped & (reference_codes != NO_REFERENCE)
    counts.no_reference_pixels += int((mapped & ~has_reference).sum())
    reference_index = correspondence.classify(reference_codes[has_reference], counts.unmatched)
    counts.ignored_pixels += int((reference_index == IGNORED).sum())
    assessed = reference_index >= 0
    pairs = reference_index[assessed] * k + map_index[has_reference][assessed]
    counts.pixels += np.bincount(pairs, minlength=k * k).reshape(k, k)
    if pixel_area is not None:
        weights = pixel_area[has_reference][assessed]
        counts.area_m2 += np.bincount(pairs, weights=weights, minlength=k * k).reshape(k, k)
