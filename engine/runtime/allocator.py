"""Keep freed tensor memory in the process instead of handing it back to the OS after every operation.

glibc serves every allocation above 32 MB (its largest mmap threshold) with a fresh ``mmap`` and
unmaps it on free. Model activations are mostly that size (a SAM decoder batch holds 256 MB tensors),
so each operation paid page faults and kernel zeroing for its output: on the 2-core CPU a ReSeg-CLIP
tile spent as much time in the kernel as in user code (33 s sys, 33 s user). Serving them from the heap
and trimming it only when asked cut that tile from 43 s to 25 s and SegEarth-OV's from 17.8 s to 13.4 s.

The price is that the heap keeps its high-water mark until ``release_free_memory`` trims it: the worker
calls that once it has been idle for a few seconds after a run, so back-to-back runs reuse the pages and
an idle worker holds no more than it did before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

# mallopt parameter numbers (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: Environment switch: "0" leaves glibc's allocation policy alone.
KEEP_FREED_MEMORY_ENV = "RS_OVSEG_KEEP_FREED_MEMORY"
#: Free memory at the top of the heap kept before glibc trims on its own (the int maximum: never).
_TRIM_THRESHOLD = 2**31 - 1
_kept = False  # whether keep_freed_memory() applied the policy in this process


@functools.lru_cache(maxsize=1)
def _glibc():
    """The C library if it is glibc (with mallopt and malloc_trim), else None (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and stop automatic trimming; True if applied.

    Call once at process start, before large tensors exist (earlier mmaps stay as they are).
    ``RS_OVSEG_KEEP_FREED_MEMORY=0`` in the environment keeps glibc's default (lower peak RSS on large
    rasters, slower)."""
    global _kept
    libc = _glibc()
    if libc is None or os.environ.get(KEEP_FREED_MEMORY_ENV, "1").strip() == "0":
        return False
    _kept = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _kept


def heap_policy() -> str:
    """For diagnostics: "keep freed memory", "glibc default" or "not glibc"."""
    if _glibc() is None:
        return "not glibc"
    return "keep freed memory" if _kept else "glibc default"


def release_free_memory() -> bool:
    """Give the heap's free pages back to the OS (after a job); True if anything was released."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
