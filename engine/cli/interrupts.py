"""SIGINT and SIGTERM stop a command cleanly: the run unwinds (its clean-up removes every temporary file)
and the command exits with the shell's status for that signal (128 + number: 130, 143).

Python turns SIGINT into KeyboardInterrupt, but SIGTERM's default action kills the process on the spot,
leaving half-written temporary files. Inside ``stop_on_signals`` both raise ``Stopped`` (a
KeyboardInterrupt, so code that already unwinds on Ctrl-C unwinds on it too). Later signals are ignored
until the block ends, so a second Ctrl-C cannot interrupt the clean-up itself.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """The process received ``signum``; the run is unwinding."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def exit_status(error: BaseException) -> int:
    """The exit status of a stopped or cancelled run: 128 + signal, else 130 (Ctrl-C's)."""
    return error.exit_status if isinstance(error, Stopped) else 128 + signal.SIGINT


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise ``Stopped`` once in the main thread; no-op elsewhere."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = False

    def handler(signum, _frame) -> None:
        nonlocal stopping
        if stopping:
            return  # already unwinding: let the clean-up finish
        stopping = True
        raise Stopped(signum)

    previous = {number: signal.signal(number, handler) for number in SIGNALS}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
