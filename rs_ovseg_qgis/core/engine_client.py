"""Talks to the engine's persistent worker (``python -m engine worker``) over JSON lines.

The worker runs in its own interpreter (torch never enters QGIS's process). One client is shared by
the dock and the Processing algorithm so that models stay loaded between runs. ``request`` blocks its
caller (a QgsTask or Processing thread, never the GUI thread) and is safe to call from several threads:
a reader thread routes every stdout line to the request whose ``id`` it carries.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import queue
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# How often a waiting request looks at its cancel flag and at the worker's health (seconds).
POLL_INTERVAL_S = 0.1
# How long a shut-down worker may take to exit before it is killed (seconds).
STOP_GRACE_S = 3.0
STDERR_LINES_KEPT = 40


class EngineError(Exception):
    """The engine reported an error. ``kind``: "user" (actionable message), "internal", "cancelled"."""

    def __init__(self, message: str, kind: str = "internal"):
        super().__init__(message)
        self.kind = kind


class EngineCancelledError(EngineError):
    def __init__(self, message: str = "cancelled"):
        super().__init__(message, "cancelled")


class EngineDiedError(EngineError):
    """The worker process ended while a request was running; the message says why."""

    def __init__(self, message: str):
        super().__init__(message, "internal")


@dataclass
class EngineCommand:
    """How to start the worker: an argument list (never a shell string) and its environment."""

    python: Path
    engine_dir: Path  # the folder holding the ``engine`` package
    extra_env: dict[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        return [str(self.python), "-u", "-m", "engine", "worker"]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        # The bundled (or repository) engine must win over any other installed copy.
        parent = str(self.engine_dir.parent)
        env["PYTHONPATH"] = os.pathsep.join([parent, *filter(None, [env.get("PYTHONPATH")])])
        env["PYTHONIOENCODING"] = "utf-8"
        env["PYTHONUNBUFFERED"] = "1"
        return env


Event = dict
EventHandler = Callable[[Event], None]


class EngineClient:
    """A persistent engine worker, started on first use and restarted if it dies."""

    def __init__(self, command: EngineCommand, log: Callable[[str, str], None] | None = None):
        self.command = command
        self._log = log or (lambda level, message: None)
        self._process: subprocess.Popen | None = None
        self._lock = threading.RLock()
        self._queues: dict[str, queue.Queue] = {}
        self._ids = itertools.count(1)
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        self._stderr_thread: threading.Thread | None = None
        self._readers: list[threading.Thread] = []
        self._closing = False  # set by stop(): reader threads then stay silent (QGIS may be exiting)
        self.starts = 0
        self.last_exit_reason: str | None = None  # why the previous worker ended, for the user

    # --- process ---------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.is_running() else None

    def start(self) -> None:
        with self._lock:
            if self.is_running():
                return
            if self._process is not None:  # it was running once: say why it is being restarted
                self.last_exit_reason = self._describe_exit(self._process)
                self._log("warning", f"engine worker restarted: {self.last_exit_reason}")
            python = self.command.python
            if not python.exists():
                raise EngineError(
                    f'the engine\'s Python interpreter {python} does not exist: run "Set up engine" '
                    "in the RS OVSeg panel, or choose an interpreter in its Engine section",
                    "user",
                )
            self._stderr_tail.clear()
            flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # no console window on Windows
            self._process = subprocess.Popen(
                self.command.argv(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.command.env(),
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                creationflags=flags,
            )
            self.starts += 1
            process = self._process
            self._closing = False
            stdout_reader = threading.Thread(target=self._read_stdout, args=(process,), daemon=True)
            self._stderr_thread = threading.Thread(target=self._read_stderr, args=(process,), daemon=True)
            self._readers = [stdout_reader, self._stderr_thread]
            for reader in self._readers:
                reader.start()

    def stop(self) -> None:
        """Ask the worker to shut down, then make sure it has and that its reader threads ended."""
        with self._lock:
            process, self._process = self._process, None
            self._closing = True
        if process is not None and process.poll() is None:
            try:
                process.stdin.write(json.dumps({"command": "shutdown"}) + "\n")
                process.stdin.flush()
                process.wait(STOP_GRACE_S)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                process.kill()
                process.wait(STOP_GRACE_S)
        for reader in self._readers:
            reader.join(STOP_GRACE_S)  # they end at the pipes' EOF
        self._readers = []

    def _log_unless_closing(self, level: str, message: str) -> None:
        if not self._closing:
            self._log(level, message)

    def _wait_for_exit(self) -> None:
        process = self._process
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_GRACE_S)

    def _describe_exit(self, process: subprocess.Popen) -> str:
        code = process.poll()
        if code is not None and self._stderr_thread is not None:
            self._stderr_thread.join(STOP_GRACE_S)  # the dying words are the useful part
        tail = "\n".join(list(self._stderr_tail)[-8:])
        reason = f"the worker exited with code {code}" if code is not None else "the worker stopped"
        if code is not None and code < 0:
            reason = f"the worker was killed by signal {-code}"
        return f"{reason}; its last messages:\n{tail}" if tail else reason

    def _read_stdout(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                self._log_unless_closing("warning", f"engine wrote a line that is not JSON: {line[:200]}")
                continue
            target = self._queues.get(str(event.get("id")))
            if target is not None:
                target.put(event)
            elif event.get("event") == "log":
                self._log_unless_closing(event.get("level", "info"), event.get("message", ""))
        for target in list(self._queues.values()):  # wake every waiter: the worker is gone
            target.put({"event": "_eof"})

    def _read_stderr(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            line = line.rstrip()
            if line:
                self._stderr_tail.append(line)
                self._log_unless_closing("info", line)

    def _send(self, message: dict) -> None:
        with self._lock:
            process = self._process
            if process is None or process.poll() is not None:
                reason = self._describe_exit(process) if process else "the worker is not running"
                raise EngineDiedError(reason)
            process.stdin.write(json.dumps(message) + "\n")
            process.stdin.flush()

    # --- requests --------------------------------------------------------------------------------
    def request(
        self,
        command: str,
        args: dict | None = None,
        on_event: EventHandler | None = None,
        is_cancelled: Callable[[], bool] | None = None,
    ) -> dict:
        """Send one request and wait for its result.

        ``on_event`` receives the progress and log events (in the calling thread). When
        ``is_cancelled()`` turns true the engine is told to cancel; the call then raises EngineCancelledError.
        Raises EngineError for an engine error and EngineDiedError if the worker process ends meanwhile.
        """
        self.start()
        request_id = f"r{next(self._ids)}"
        inbox: queue.Queue = queue.Queue()
        self._queues[request_id] = inbox
        message: dict = {"id": request_id, "command": command}
        if args is not None:
            message["args"] = args
        cancel_sent = False
        try:
            try:
                self._send(message)
            except (OSError, EngineDiedError):
                # The worker died before this request reached it (nothing ran): restart, send again.
                self._wait_for_exit()
                self.start()
                try:
                    self._send(message)
                except OSError as error:
                    raise EngineDiedError(f"could not talk to the engine worker: {error}") from error
            while True:
                if is_cancelled is not None and not cancel_sent and is_cancelled():
                    cancel_sent = True
                    try:
                        self._send({"command": "cancel", "id": request_id})
                    except (OSError, EngineDiedError):
                        raise EngineCancelledError() from None
                try:
                    event = inbox.get(timeout=POLL_INTERVAL_S)
                except queue.Empty:
                    process = self._process
                    if process is None or process.poll() is not None:
                        if not inbox.empty():
                            continue
                        reason = self._describe_exit(process) if process else "the worker stopped"
                        raise EngineDiedError(reason) from None
                    continue
                kind = event.get("event")
                if kind == "result":
                    if cancel_sent:
                        raise EngineCancelledError()
                    return event.get("result") or {}
                if kind == "error":
                    if event.get("kind") == "cancelled" or cancel_sent:
                        raise EngineCancelledError(event.get("message") or "cancelled")
                    message = event.get("message") or "the engine failed"
                    raise EngineError(message, event.get("kind", "internal"))
                if kind == "_eof":
                    process = self._process
                    if process is not None:
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            process.wait(STOP_GRACE_S)
                    raise EngineDiedError(self._describe_exit(process) if process else "the worker stopped")
                if on_event is not None:
                    on_event(event)
        finally:
            self._queues.pop(request_id, None)
