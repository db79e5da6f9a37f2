""" "Test engine": a report a user can paste into a bug report (interpreter, versions, device, weights).

One ``info`` request to the worker answers everything: the engine's ``engine_report()`` includes the
weights registry with where each file was found, so no second process is needed.
"""

from __future__ import annotations

from qgis.core import Qgis, QgsTask

from . import engine_service
from .engine_client import EngineCommand, EngineError


def format_report(command: EngineCommand, info: dict | None, error: str = "") -> str:
    """Plain text, one fact per line; the weights list last, one line per known file."""
    lines = [
        "RS OVSeg engine report",
        f"QGIS: {Qgis.QGIS_VERSION}",
        f"engine interpreter: {command.python}",
        f"engine source: {command.engine_dir}",
    ]
    if error:
        lines.append(f"PROBLEM: {error}")
    info = dict(info or {})
    weights = info.pop("weights", None)
    for key, value in info.items():
        if key.endswith("_bytes") and isinstance(value, (int, float)):
            lines.append(f"{key[:-6]}: {value / 2**30:.1f} GiB")
        else:
            lines.append(f"{key}: {value}")
    if weights is not None:
        present = [w for w in weights if w.get("present")]
        lines.append(f"weights present: {len(present)} of {len(weights)} known")
        for item in weights:
            where = f" in {item['present']}" if item.get("present") else ""
            mark = "x" if item.get("present") else " "
            lines.append(f"  [{mark}] {item.get('name')} ({item.get('kind')}){where}")
    return "\n".join(lines)


class EngineDiagnosticsTask(QgsTask):
    """Asks the worker for its ``info``; ``report`` holds the text afterwards, ``ok`` whether it answered."""

    def __init__(self):
        super().__init__("RS OVSeg: test engine", QgsTask.CanCancel)
        self.command = engine_service.current_command()
        self.report = ""
        self.ok = False

    def run(self) -> bool:
        info, problem = None, ""
        try:
            info = engine_service.shared_client().request("info", is_cancelled=self.isCanceled)
        except EngineError as error:
            problem = str(error)
        self.ok = info is not None
        self.report = format_report(self.command, info, problem)
        return True
