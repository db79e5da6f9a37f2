"""The spill file gives back exactly what was parked, reuses freed room, and leaves nothing behind."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.pipeline.spill_file import EXTENT_ALIGNMENT, SpillFile


def test_parked_arrays_come_back_bit_identical_in_any_order(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [
        rng.standard_normal((3, 17, 29)).astype(np.float32),
        rng.integers(0, 2**16, (5000,), dtype=np.uint16),
        rng.standard_normal((2, 2)),  # float64, smaller than one extent
        np.asfortranarray(rng.standard_normal((40, 33)).astype(np.float32)),  # not C-contiguous
        np.array([np.nan, -0.0, np.inf], np.float32),
    ]
    with SpillFile(tmp_path) as spill:
        parked = [spill.park(a) for a in arrays]
        assert list(tmp_path.iterdir()) == []  # unlinked from the start
        for n in (3, 0, 4, 2, 1, 0):
            back = spill.fetch(parked[n])
            assert back.dtype == arrays[n].dtype and back.shape == arrays[n].shape
            assert back.tobytes() == np.ascontiguousarray(arrays[n]).tobytes()


def test_random_parks_and_releases_never_overlap_and_come_back_intact(tmp_path):
    """A random park/release sequence against an independent record of what is live."""
    rng = np.random.default_rng(1)
    live: dict[int, tuple] = {}
    with SpillFile(tmp_path) as spill:
        for step in range(400):
            if live and rng.random() < 0.45:
                key = list(live)[rng.integers(len(live))]
                array, parked = live.pop(key)
                assert spill.fetch(parked).tobytes() == array.tobytes()
                spill.release(parked)
            else:
                array = rng.standard_normal(int(rng.integers(1, 6000))).astype(np.float32)
                live[step] = (array, spill.park(array))
            spans = sorted((p.offset, p.offset + p.extent) for _, p in live.values())
            assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
            assert spill.parked_bytes == sum(p.extent for _, p in live.values())
        for array, parked in live.values():
            assert spill.fetch(parked).tobytes() == array.tobytes()
            spill.release(parked)
        assert spill.parked_bytes == 0
        # Everything released and merged: the next array goes back to the start of the file.
        assert spill.park(np.zeros(10, np.float32)).offset == 0


def test_freed_room_is_reused_first_fit_and_merged(tmp_path):
    page = EXTENT_ALIGNMENT // 4  # float32 values per extent unit
    with SpillFile(tmp_path) as spill:
        a, b, c = (spill.park(np.ones(n * page, np.float32)) for n in (2, 3, 1))
        assert (a.offset, b.offset, c.offset) == (0, 2 * EXTENT_ALIGNMENT, 5 * EXTENT_ALIGNMENT)
        spill.release(b)
        d = spill.park(np.ones(page, np.float32))
        assert d.offset == b.offset  # first fit, inside b's old room
        spill.release(a)
        spill.release(d)  # a, d and the rest of b merge into one free extent of 5 units
        e = spill.park(np.ones(5 * page, np.float32))
        assert e.offset == 0
        assert spill.peak_file_bytes == 6 * EXTENT_ALIGNMENT  # the file never grew for d or e


def test_a_failed_write_reserves_nothing(tmp_path):
    class FullDisk:
        def __init__(self, file):
            self.seek = file.seek

        def write(self, data):
            raise OSError(28, "No space left on device")

    spill = SpillFile(tmp_path)
    first = spill.park(np.ones(100, np.float32))
    real = spill._file
    spill._file = FullDisk(real)
    with pytest.raises(OSError, match="No space"):
        spill.park(np.ones(100, np.float32))
    spill._file = real
    assert spill.parked_bytes == first.extent
    assert spill.park(np.ones(100, np.float32)).offset == first.extent  # the failed room was given back
    spill.close()
