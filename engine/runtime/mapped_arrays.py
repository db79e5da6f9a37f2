"""NumPy arrays in their own anonymous memory mappings, outside malloc's heap.

Under the kept-heap policy (engine.runtime.allocator) every large tensor comes from one heap that is never
trimmed. Arrays that outlive many of those tensors (crop logits kept for later tiles, a tile's logit
sums and logits) would sit between the holes the tensors leave when freed and keep them from merging,
and they would hold their tile's pages in the heap after the tile. Given their own mapping, they do
neither: their pages go back to the OS the moment they are dropped. (The larger share of the heap's
growth on big rasters came from batch-sized upsampler temporaries; see engine.methods.segearth_ov.)
"""

from __future__ import annotations

import math
import mmap

import numpy as np


def mapped_zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
    """Zeros in a fresh anonymous mapping (the OS hands its pages out zeroed), writable and C-contiguous;
    the mapping is released when the array and all its views are gone."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    if size == 0:
        return np.zeros(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, size), dtype=dtype).reshape(shape)


def mapped_copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``array`` in a fresh anonymous mapping."""
    out = mapped_zeros(array.shape, array.dtype)
    out[...] = array
    return out
