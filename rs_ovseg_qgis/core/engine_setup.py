""" "Set up engine": create the engine's own virtual environment and install its dependencies.

The environment lives in the QGIS profile (``settings.managed_venv_dir()``), never in the plugin
folder. Dependencies come from the bundled ``pyproject.toml`` and are pinned by the bundled
``constraints.txt``; the engine's source is not installed: the worker runs it from the plugin
(``PYTHONPATH``), so a plugin update updates the engine. Every line pip prints reaches the log.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from qgis.core import QgsTask

from .paths import engine_source_dir
from .settings import venv_python


def engine_requirements(pyproject: Path) -> list[str]:
    """The ``[project] dependencies`` list of ``pyproject.toml`` (read without tomllib: QGIS may run
    Python 3.9, which has none)."""
    text = pyproject.read_text(encoding="utf-8")
    match = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.MULTILINE | re.DOTALL)
    if match is None:
        raise ValueError(f"{pyproject} has no [project] dependencies list")
    return re.findall(r'"([^"]+)"', match.group(1))


def setup_commands(base_python: str, venv: Path, source_root: Path) -> list[list[str]]:
    """The argument lists that build the environment (no shell)."""
    python = str(venv_python(venv))
    requirements = engine_requirements(source_root / "pyproject.toml")
    return [
        [base_python, "-m", "venv", str(venv)],
        [python, "-m", "pip", "install", "--upgrade", "pip"],
        [python, "-m", "pip", "install", "-c", str(source_root / "constraints.txt"), *requirements],
    ]


class EngineSetupTask(QgsTask):
    """Runs the set-up commands one after another; cancel stops the current one."""

    def __init__(self, base_python: str, venv: Path, log: Callable[[str, str], None]):
        super().__init__("RS OVSeg: set up engine", QgsTask.CanCancel)
        self.commands = setup_commands(base_python, venv, engine_source_dir().parent)
        self.venv = venv
        self.log = log
        self.error = ""

    def run(self) -> bool:
        for step, argv in enumerate(self.commands):
            self.log("info", "$ " + " ".join(argv))
            process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
            )
            for line in process.stdout:
                self.log("info", line.rstrip())
                if self.isCanceled():
                    process.kill()
                    break
            code = process.wait()
            if self.isCanceled():
                self.error = "cancelled"
                return False
            if code != 0:
                self.error = f"step {step + 1} failed with code {code}: {' '.join(argv[:4])} ...; see the log"
                return False
            self.setProgress(100.0 * (step + 1) / len(self.commands))
        return True
