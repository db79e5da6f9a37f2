"""Arrays parked in an anonymous temporary file until they are needed again.

Crop logits that later tile rows reuse are kept in memory up to a budget; past it, evaluating them
again costs a model call per crop (~0.25 s on the 2-core CPU) where writing them out and reading them
back costs a few milliseconds through the page cache. The file is unlinked as soon as it is created
(``tempfile.TemporaryFile``), so nothing is left behind when the process ends, however it ends. Freed
extents are reused first-fit, so the file stays near the largest amount parked at once.
"""

from __future__ import annotations

import bisect
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Extents are whole pages, so freed ones fit later arrays of similar size.
EXTENT_ALIGNMENT = 4096


@dataclass(frozen=True)
class Parked:
    """Where one array lies in the file: byte ``offset``, ``extent`` bytes reserved, its shape and dtype."""

    offset: int
    extent: int
    shape: tuple[int, ...]
    dtype: np.dtype


class SpillFile:
    """Write arrays out (``park``), read them back (``fetch``), give their room back (``release``)."""

    def __init__(self, folder: Path | str | None = None) -> None:
        # Closed by close() or __exit__; the store that owns it calls close() when the run ends.
        self._file = tempfile.TemporaryFile(prefix=".rs_ovseg_spill_", dir=folder)  # noqa: SIM115
        self._free: list[tuple[int, int]] = []  # (offset, extent), sorted by offset, never adjacent
        self._end = 0
        self.parked_bytes = 0
        self.peak_file_bytes = 0

    def park(self, array: np.ndarray) -> Parked:
        """Write ``array`` to the file; raises OSError (e.g. disk full) with nothing reserved."""
        data = np.ascontiguousarray(array)
        extent = max(EXTENT_ALIGNMENT, -(-data.nbytes // EXTENT_ALIGNMENT) * EXTENT_ALIGNMENT)
        offset = self._reserve(extent)
        try:
            self._file.seek(offset)
            self._file.write(memoryview(data).cast("B"))
        except OSError:
            self._give_back(offset, extent)
            raise
        self.parked_bytes += extent
        self.peak_file_bytes = max(self.peak_file_bytes, self._end)
        return Parked(offset, extent, data.shape, data.dtype)

    def fetch(self, parked: Parked) -> np.ndarray:
        """A fresh array holding what ``park`` wrote."""
        out = np.empty(parked.shape, parked.dtype)
        view = memoryview(out).cast("B")
        self._file.seek(parked.offset)
        read = self._file.readinto(view)
        if read != out.nbytes:
            raise OSError(f"spill file: read {read} of {out.nbytes} bytes at offset {parked.offset}")
        return out

    def release(self, parked: Parked) -> None:
        """Make ``parked``'s room available again."""
        self.parked_bytes -= parked.extent
        self._give_back(parked.offset, parked.extent)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SpillFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _reserve(self, extent: int) -> int:
        for n, (offset, size) in enumerate(self._free):
            if size >= extent:
                if size == extent:
                    del self._free[n]
                else:
                    self._free[n] = (offset + extent, size - extent)
                return offset
        offset = self._end
        self._end += extent
        return offset

    def _give_back(self, offset: int, extent: int) -> None:
        if offset + extent == self._end:
            self._end = offset
            # The extent before may now end at the file's end as well.
            if self._free and sum(self._free[-1]) == self._end:
                self._end = self._free.pop()[0]
            return
        n = bisect.bisect_left(self._free, (offset, extent))
        if n < len(self._free) and self._free[n][0] == offset + extent:  # merge with the next extent
            extent += self._free.pop(n)[1]
        if n > 0 and sum(self._free[n - 1]) == offset:  # merge with the previous extent
            offset, extent = self._free[n - 1][0], self._free[n - 1][1] + extent
            self._free[n - 1] = (offset, extent)
        else:
            self._free.insert(n, (offset, extent))
