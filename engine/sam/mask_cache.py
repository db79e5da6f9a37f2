"""Per-window cache of SAM id maps, so segmenting the same imagery with another vocabulary (or another
threshold, template set…) costs no SAM time.

Keys are the window's exact pixels (a BLAKE2 digest) plus a fingerprint of everything that shapes the
masks (SAM weights identity, parameter sets, which sets). Entries live in memory, in the smallest
integer type that holds their ids (least recently used dropped beyond ``max_bytes``), and, when a folder
is given, on disk as compressed ``.npz`` files (read with ``allow_pickle=False``) so a later process can
reuse them too.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from engine.runtime.mapped_arrays import mapped_copy

#: Bytes of id maps kept in memory. An 896² SAM window with the 2 sets ViT-B/16's schedule uses is
#: 1.6 MB as uint16 (6.4 MB as int32); a tile row of a raster 20 km wide at ~1.1 m has ~18 windows, and
#: the next tile row reuses them.
DEFAULT_MAX_BYTES = 256 * 2**20


def window_digest(window: np.ndarray) -> str:
    """Hex digest of an (H, W, 3) uint8 window's pixels and shape."""
    h = hashlib.blake2b(digest_size=20)
    h.update(repr((window.shape, str(window.dtype))).encode())
    h.update(np.ascontiguousarray(window).tobytes())
    return h.hexdigest()


def settings_fingerprint(settings: dict) -> str:
    """Stable digest of JSON-able settings that shape the masks."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def compact_ids(maps: np.ndarray) -> np.ndarray:
    """The same ids in the smallest of uint8/uint16/int32 that holds them (ids are ≥ 0)."""
    if maps.size == 0 or maps.min() < 0:
        return maps
    largest = int(maps.max())
    for dtype in (np.uint8, np.uint16):
        if largest <= np.iinfo(dtype).max:
            return maps.astype(dtype, copy=False)
    return maps


class WindowMaskCache:
    def __init__(self, folder: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.max_bytes = max_bytes
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self.bytes = 0

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{key}.npz"

    def get(self, key: str) -> np.ndarray | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        if self.folder is not None and self._path(key).is_file():
            try:
                with np.load(self._path(key), allow_pickle=False) as data:
                    maps = data["id_maps"]
            except (OSError, ValueError, KeyError):
                return None  # a damaged cache file is just a miss
            self._remember(key, maps)
            return maps
        return None

    def put(self, key: str, maps: np.ndarray) -> None:
        maps = compact_ids(maps)
        self._remember(key, maps)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a reader never sees half a file.
            handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".npz.part")
            try:
                with os.fdopen(handle, "wb") as stream:
                    np.savez_compressed(stream, id_maps=maps)
                os.replace(temporary, self._path(key))
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise

    def _remember(self, key: str, maps: np.ndarray) -> None:
        if key in self._memory:
            self.bytes -= self._memory.pop(key).nbytes
        # Entries outlive many tiles' temporaries: on the heap each would pin the holes they leave and the
        # heap would grow by hundreds of MB per tile (engine.runtime.mapped_arrays).
        kept = mapped_copy(maps)
        self._memory[key] = kept
        self.bytes += kept.nbytes
        while self.bytes > self.max_bytes and len(self._memory) > 1:  # the newest always stays
            self.bytes -= self._memory.popitem(last=False)[1].nbytes

    def __len__(self) -> int:
        return len(self._memory)
