""" "Test engine": a report a user can paste into a bug report (interpreter, versions, device, weights)."""

from __future__ import annotations

import json
import subprocess

from qgis.core import Qgis, QgsTask

from . import engine_service
from .engine_client import EngineCommand, EngineError

MODELS_LIST_TIMEOUT_S = 60


def list_weights(command: EngineCommand) -> list[dict]:
    """``python -m engine models list --json`` in the engine's interpreter (a separate, short process)."""
    completed = subprocess.run(
        [str(command.python), "-m", "engine", "models", "list", "--json"],
        capture_output=True,
        text=True,
        env=command.env(),
        timeout=MODELS_LIST_TIMEOUT_S,
        check=False,
        creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
    )
    if completed.returncode != 0:
        raise EngineError(f"listing the weights failed: {completed.stderr.strip()[-500:]}")
    return json.loads(completed.stdout)


def format_report(
    command: EngineCommand, info: dict | None, weights: list[dict] | None, error: str = ""
) -> str:
    """Plain text, one fact per line."""
    lines = [
        "RS OVSeg engine report",
        f"QGIS: {Qgis.QGIS_VERSION}",
        f"engine interpreter: {command.python}",
        f"engine source: {command.engine_dir}",
    ]
    if error:
        lines.append(f"PROBLEM: {error}")
    for key, value in (info or {}).items():
        if key.endswith("_bytes") and isinstance(value, (int, float)):
            lines.append(f"{key[:-6]}: {value / 2**30:.1f} GiB")
        else:
            lines.append(f"{key}: {value}")
    if weights is not None:
        present = [w for w in weights if w.get("present") not in (None, "", "no")]
        lines.append(f"weights present: {len(present)} of {len(weights)} known")
        for item in weights:
            lines.append(f"  [{'x' if item in present else ' '}] {item.get('name')} ({item.get('kind')})")
    return "\n".join(lines)


class EngineDiagnosticsTask(QgsTask):
    """Asks the worker for its ``info`` and lists the weights; ``report`` holds the text afterwards."""

    def __init__(self):
        super().__init__("RS OVSeg: test engine", QgsTask.CanCancel)
        self.command = engine_service.current_command()
        self.report = ""
        self.ok = False

    def run(self) -> bool:
        info, weights, problems = None, None, []
        try:
            info = engine_service.shared_client().request("info", is_cancelled=self.isCanceled)
        except EngineError as error:
            problems.append(str(error))
        if info is not None:
            try:
                weights = list_weights(self.command)
            except (EngineError, OSError, ValueError, subprocess.TimeoutExpired) as error:
                problems.append(str(error))
        self.ok = info is not None and not problems
        self.report = format_report(self.command, info, weights, "; ".join(problems))
        return True
