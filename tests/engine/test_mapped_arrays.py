"""Arrays in their own anonymous mappings: zeroed, writable, outside the heap, released when dropped."""

import gc

import numpy as np

from engine.runtime.mapped_arrays import mapped_copy, mapped_zeros


def _mapping_of(array: np.ndarray) -> str | None:
    """The /proc/self/maps line whose range holds the array's first byte."""
    address = array.__array_interface__["data"][0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            if start <= address < end:
                return line
    return None


def test_mapped_zeros_are_zero_writable_and_in_their_own_mapping():
    array = mapped_zeros((3, 1000, 700), np.float32)
    assert array.shape == (3, 1000, 700) and array.dtype == np.float32 and array.flags.c_contiguous
    assert not array.any()
    array[1, 2, 3] = 5.0
    assert array.sum() == 5.0
    line = _mapping_of(array)
    assert line is not None and "[heap]" not in line
    start, end = (int(x, 16) for x in line.split()[0].split("-"))
    assert end - start >= array.nbytes


def test_mapping_is_released_with_the_last_view():
    array = mapped_zeros((1024, 1024), np.float64)
    view = array[10:20]
    address = array.__array_interface__["data"][0]
    del array
    gc.collect()
    assert _mapping_of(view) is not None  # a view keeps the mapping alive
    del view
    gc.collect()
    with open("/proc/self/maps") as maps:
        ranges = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in maps]
    assert not any(start <= address < end and end - start >= 8 * 2**20 for start, end in ranges)


def test_mapped_copy_equals_its_source_and_is_independent():
    source = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)[:, 1:4, ::2]
    copy = mapped_copy(source)
    assert copy.flags.c_contiguous and np.array_equal(copy, source)
    copy[0, 0, 0] = -1
    assert source[0, 0, 0] != -1


def test_empty_shapes_need_no_mapping():
    assert mapped_zeros((0, 4), np.uint8).shape == (0, 4)
    assert mapped_copy(np.zeros((3, 0), np.float32)).shape == (3, 0)
