"""The one engine client the plugin shares (dock, Processing, diagnostics), and its log."""

from __future__ import annotations

import threading

from qgis.core import Qgis, QgsApplication, QgsMessageLog

from .engine_client import EngineClient, EngineCommand
from .paths import engine_source_dir
from .settings import engine_python

LOG_TAG = "RS OVSeg"
_LEVELS = {"debug": Qgis.Info, "info": Qgis.Info, "warning": Qgis.Warning, "error": Qgis.Critical}
_lock = threading.Lock()
_client: EngineClient | None = None


def log(level: str, message: str) -> None:
    """Write to QGIS's log panel (tab "RS OVSeg"); safe from any thread."""
    QgsMessageLog.logMessage(message, LOG_TAG, _LEVELS.get(level, Qgis.Info))


def current_command() -> EngineCommand:
    return EngineCommand(python=engine_python(), engine_dir=engine_source_dir())


def shared_client() -> EngineClient:
    """The shared client; replaced (old worker stopped) when the chosen interpreter changed."""
    global _client
    with _lock:
        command = current_command()
        if _client is not None and (_client.command.python, _client.command.engine_dir) != (
            command.python,
            command.engine_dir,
        ):
            _client.stop()
            _client = None
        if _client is None:
            _client = EngineClient(command, log=log)
            _stop_when_qgis_quits()
        return _client


_quit_hooked = False


def _stop_when_qgis_quits() -> None:
    """Stop the worker before QGIS tears down (its reader threads must not outlive Qt)."""
    global _quit_hooked
    application = QgsApplication.instance()
    if application is not None and not _quit_hooked:
        application.aboutToQuit.connect(shutdown)
        _quit_hooked = True


def shutdown() -> None:
    """Stop the worker (plugin unload)."""
    global _client
    with _lock:
        client, _client = _client, None
    if client is not None:
        client.stop()
