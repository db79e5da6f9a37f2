"""Peak resident memory of one run inside a process that has already run others.

``getrusage``'s ``ru_maxrss`` is the high-water mark of the whole process: after a warm-up and several
timed runs it is the largest of them all, and a heap that grows from run to run makes it the last
run's plus everything kept before. On Linux writing ``5`` to ``/proc/self/clear_refs`` resets the
high-water mark to the current resident size, so each run's own peak can be read afterwards. The reset
also resets ``ru_maxrss`` (both read the kernel's one mark), so :class:`RunPeaks` keeps the process-wide
peak itself. Where the mark cannot be reset, every run reports the process-wide mark.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_RESET_HIGH_WATER_MARK = "5"  # proc(5): "reset the peak resident set size"


def high_water_mark_bytes() -> int:
    """The kernel's peak resident size of this process since start or since the last reset."""
    try:
        found = re.search(r"^VmHWM:\s+(\d+)\s+kB", _STATUS.read_text(encoding="ascii"), re.MULTILINE)
    except OSError:
        found = None
    if found:
        return int(found.group(1)) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, Linux KiB


def reset_high_water_mark() -> bool:
    """Restart the peak at the current resident size; False where that is impossible (not Linux, or
    /proc not writable)."""
    try:
        _CLEAR_REFS.write_text(_RESET_HIGH_WATER_MARK, encoding="ascii")
    except OSError:
        return False
    return True


class RunPeaks:
    """Per-run and process-wide peak RSS: ``start_run()`` before a run, ``end_run()`` after it."""

    def __init__(self) -> None:
        self._process_peak = 0
        self.per_run = True  # False once a reset failed: run peaks are then process-wide marks

    def start_run(self) -> None:
        self._process_peak = max(self._process_peak, high_water_mark_bytes())
        self.per_run = reset_high_water_mark() and self.per_run

    def end_run(self) -> int:
        """Bytes: the peak since ``start_run``, models and everything else resident included."""
        peak = high_water_mark_bytes()
        self._process_peak = max(self._process_peak, peak)
        return peak

    def process_peak(self) -> int:
        """Bytes: the largest resident size of the process so far, across resets."""
        return max(self._process_peak, high_water_mark_bytes())
