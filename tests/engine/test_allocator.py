"""engine.runtime.allocator: a large block comes from the heap, not its own mapping, once applied
(in a child)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engine.runtime.allocator import KEEP_FREED_MEMORY_ENV, _glibc

CHILD = r"""
import ctypes
import sys
import numpy as np
from engine.runtime.allocator import keep_freed_memory, release_free_memory

class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2: ten size_t counters
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
from engine.runtime.allocator import heap_policy

if sys.argv[1] == "keep":
    assert keep_freed_memory()
    assert heap_policy() == "keep freed memory"
elif sys.argv[1] == "switched-off":
    assert not keep_freed_memory()
    assert heap_policy() == "glibc default"
block = np.ones(64 * 2**20, dtype=np.uint8)  # above glibc's largest mmap threshold (32 MB)
mapped = libc.mallinfo2().hblkhd  # bytes held in separately mmapped blocks
del block
print(mapped >= 64 * 2**20, release_free_memory())
"""


@pytest.mark.skipif(_glibc() is None, reason="glibc only")
@pytest.mark.parametrize("mode", ["default", "keep", "switched-off"])
def test_a_large_block_gets_its_own_mapping_unless_kept(mode):
    env = {**os.environ, KEEP_FREED_MEMORY_ENV: "0" if mode == "switched-off" else "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True, timeout=60, env=env
    ).stdout.split()
    own_mapping, released = out[0] == "True", out[1] == "True"
    if mode in ("default", "switched-off"):
        assert own_mapping  # glibc's own behaviour: mmapped on allocation, unmapped on free
    else:
        assert not own_mapping  # served from (and freed back to) the heap
        assert released  # whose free pages go back to the OS when trimmed
