"""SAM masks painted into one segment id map: the form in which ReSeg-CLIP's attention reads them.

Id maps are int32 images: 0 (``UNCOVERED_ID``) where no mask covers the pixel, else the id of the last
mask painted there (a later mask overwrites an earlier one, as in the reference).
"""

from __future__ import annotations

import numpy as np

UNCOVERED_ID = 0


def paint_id_map(masks: list[np.ndarray], shape: tuple[int, int], first_id: int = 1) -> np.ndarray:
    """Paint boolean masks (each (H, W)) in order into an (H, W) int32 map; mask k gets id first_id + k.

    Later masks overwrite earlier ones; pixels no mask covers stay UNCOVERED_ID.
    """
    id_map = np.full(shape, UNCOVERED_ID, dtype=np.int32)
    for k, mask in enumerate(masks):
        id_map[mask] = first_id + k
    return id_map
