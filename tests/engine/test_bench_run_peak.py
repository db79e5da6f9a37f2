"""Each benchmark run's peak RSS is its own: the high-water mark restarts between runs."""

from __future__ import annotations

import mmap
import sys

import pytest

from engine.bench.run_peak import RunPeaks, high_water_mark_bytes

MB = 2**20


def _touched_mapping(size: int) -> mmap.mmap:
    """Anonymous memory that is resident (every page written), outside malloc's control."""
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    return block


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reset is Linux's /proc/self/clear_refs")
def test_a_run_does_not_inherit_an_earlier_runs_peak_but_the_process_peak_does():
    peaks = RunPeaks()
    peaks.start_run()
    _touched_mapping(256 * MB).close()
    first = peaks.end_run()
    peaks.start_run()
    baseline = high_water_mark_bytes()
    _touched_mapping(96 * MB).close()
    second = peaks.end_run()
    assert peaks.per_run
    assert second < first - 100 * MB  # the first run's 256 MB block is not in the second's peak
    assert second >= baseline + 90 * MB  # the second run's own block is
    assert peaks.process_peak() >= first  # remembered across the reset
