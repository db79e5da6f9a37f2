"""Progress reporting and cancellation, shared by the command line (a bar) and the worker (JSON events).

The pipeline reports ``ProgressEvent``s to any callable and checks a ``CancelToken`` between batches;
a cancelled run raises ``engine.errors.Cancelled`` and its outputs are removed.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TextIO

from engine.errors import Cancelled


@dataclass(frozen=True)
class ProgressEvent:
    fraction: float  # 0..1 of the whole run
    stage: str  # "open" | "statistics" | "model" | "inference" | "write" | "done"
    message: str = ""

    def to_json(self) -> dict:
        return asdict(self)


ProgressCallback = Callable[[ProgressEvent], None]


def ignore_progress(event: ProgressEvent) -> None:
    """A callback that drops every event."""


class CancelToken:
    """Thread-safe flag: another thread calls ``cancel()``; the pipeline calls ``check()``."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by request; nothing was written")


class TerminalProgressBar:
    """A one-line bar on a terminal (redrawn at most ~10×/s); plain stage lines when not a TTY."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_draw = 0.0
        self._last_stage = ""

    def __call__(self, event: ProgressEvent) -> None:
        if not self.is_tty:
            if event.stage != self._last_stage:
                self.stream.write(f"[{event.stage}] {event.message}\n")
                self.stream.flush()
                self._last_stage = event.stage
            return
        now = time.monotonic()
        if now - self._last_draw < 0.1 and event.fraction < 1.0:
            return
        self._last_draw = now
        filled = round(self.width * min(max(event.fraction, 0.0), 1.0))
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {event.fraction * 100:5.1f}% {event.stage}: {event.message[:50]:<50}")
        if event.fraction >= 1.0:
            self.stream.write("\n")
        self.stream.flush()
