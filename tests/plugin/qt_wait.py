"""Waiting in a test for something QGIS does on its event loop (a task's end, an estimate's answer)."""

from __future__ import annotations

import time
from collections.abc import Callable

from qgis.PyQt.QtCore import QCoreApplication

RUN_TIMEOUT_S = 120.0  # long enough for a tiny-model run on a loaded 2-core machine


def wait_for(condition: Callable[[], bool], timeout: float = RUN_TIMEOUT_S) -> None:
    """Processes Qt events until ``condition()`` holds; fails the test after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        QCoreApplication.processEvents()
        time.sleep(0.02)
