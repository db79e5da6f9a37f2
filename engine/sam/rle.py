"""Run-length-encoded masks that segment-anything's merging passes around without copying.

``MaskData.cat`` deep-copies every list it appends, so each RLE record (a dict holding a list of run
lengths, thousands of ints for a large mask) is copied again every time batches are merged into a crop
and crops into a window. Where ~2,000 masks survive in a window that took 11.8 s of pure Python. The
records are never modified once made, so a record that deep-copies as itself changes nothing but the
time.
"""

from __future__ import annotations


class SharedRle(dict):
    """An RLE record (``{"size": [h, w], "counts": [...]}``) whose deep copy is itself."""

    def __deepcopy__(self, memo: dict) -> SharedRle:
        return self


def shared_rles(rles: list[dict]) -> list[SharedRle]:
    """The same records, as ``SharedRle``s."""
    return [rle if isinstance(rle, SharedRle) else SharedRle(rle) for rle in rles]
