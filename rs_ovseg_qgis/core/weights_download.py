"""Downloading model weights through the engine's worker (its ``download`` request) on a background
thread: the file lands in the engine's cache, verified, with progress; a gated hub repository's refusal
comes back as the engine's instructions (request access, set a token)."""

from __future__ import annotations

import threading

from qgis.PyQt.QtCore import QObject, pyqtSignal

from .engine_client import EngineClient, EngineError


class DownloadJob(QObject):
    """One ``download`` request; ``progress(fraction, text)`` and ``done`` fire on the main thread.
    Afterwards ``result`` (name, path, sha256) or ``error`` (the engine's message)."""

    progress = pyqtSignal(float, str)
    done = pyqtSignal()

    def __init__(self, client: EngineClient, name: str, token: str | None = None, parent=None):
        super().__init__(parent)
        self.client = client
        self.args = {"name": name, **({"token": token} if token else {})}
        self.result: dict | None = None
        self.error = ""
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rs_ovseg_download")

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancelled.set()

    def is_running(self) -> bool:
        return self._thread.is_alive()

    def _on_event(self, event: dict) -> None:
        if event.get("event") == "progress":
            self.progress.emit(float(event.get("fraction") or 0.0), str(event.get("message") or ""))

    def _run(self) -> None:
        try:
            self.result = self.client.request(
                "download", self.args, on_event=self._on_event, is_cancelled=self._cancelled.is_set
            )
        except EngineError as error:
            self.error = str(error)
        except OSError as error:
            self.error = f"the engine could not start: {error}"
        self.done.emit()
