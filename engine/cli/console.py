"""A long command on the terminal: the engine's log on stderr, a progress bar, and how the run ended as
the command's message and exit status (0 done, 2 a ``UserError``, 130 or 128 + signal when stopped).

Light on purpose (no torch, no GDAL): the commands import it before their work starts.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

from engine.cli.interrupts import Stopped, exit_status, stop_on_signals
from engine.errors import Cancelled, UserError

T = TypeVar("T")

#: What a stopped or cancelled run says; ``{why}`` is "cancelled" or "stopped by SIGTERM" (SIGINT).
NOTHING_WRITTEN = "{why}: nothing was written"


@contextlib.contextmanager
def engine_log_on_stderr(level: int) -> Iterator[None]:
    """Within the block the ``engine`` loggers' records at ``level`` and above reach the terminal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    engine_logger = logging.getLogger("engine")
    engine_logger.addHandler(handler)
    engine_logger.setLevel(level)
    engine_logger.propagate = False
    try:
        yield
    finally:
        engine_logger.removeHandler(handler)
        engine_logger.propagate = True


def run_on_console(
    work: Callable[..., T],
    report: Callable[[T], None],
    *,
    quiet: bool,
    stopped: str = NOTHING_WRITTEN,
    log_level: int | None = logging.INFO,
    signals: bool = True,
) -> int:
    """Run ``work(progress, cancel)``, then ``report(result)``; returns the command's exit status.

    ``quiet`` drops the progress bar; ``stopped`` is the message of a cancelled or interrupted run
    (``{why}`` filled in); ``log_level`` None leaves the engine's log alone; ``signals`` makes SIGTERM
    (and SIGINT) unwind the run, so its temporary files are removed (engine.cli.interrupts).
    """
    from engine.pipeline.progress import CancelToken, TerminalProgressBar, ignore_progress

    logs = contextlib.nullcontext() if log_level is None else engine_log_on_stderr(log_level)
    try:
        with logs:
            progress = ignore_progress if quiet else TerminalProgressBar(sys.stderr)
            with stop_on_signals() if signals else contextlib.nullcontext():
                result = work(progress, CancelToken())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt) as exc:
        why = f"stopped by {exc.name}" if isinstance(exc, Stopped) else "cancelled"
        print(stopped.format(why=why), file=sys.stderr)
        return exit_status(exc)
    report(result)
    return 0
