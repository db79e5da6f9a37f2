""" "Set up engine": create the engine's own virtual environment and install its dependencies.

The environment lives in the QGIS profile (``settings.managed_venv_dir()``), never in the plugin
folder. Dependencies come from the bundled ``pyproject.toml`` and are pinned by the bundled
``constraints.txt``; the engine's source is not installed: the worker runs it from the plugin
(``PYTHONPATH``), so a plugin update updates the engine. Every line pip prints reaches the log.

Which Python, and why ``--system-site-packages``: the engine reads and writes rasters with GDAL's
Python bindings (``osgeo.gdal``), which pip cannot install reliably (they must match a compiled GDAL
library). QGIS always comes with them for the interpreter it runs: on Windows (OSGeo4W) and macOS (the
app bundle) that is QGIS's own Python; on Linux distributions it is the system Python (Debian:
``/usr/bin/python3`` with ``python3-gdal``). So the environment is created from that interpreter
(``settings.base_python()``) with ``--system-site-packages``: GDAL and the numpy it was built against
stay visible, and pip installs only what is missing (torch, open_clip, ...) into the environment, whose
own packages come first on ``sys.path``. ``constraints.txt`` keeps numpy below 2 for those bindings.

After pip, a ``.pth`` file in the environment's site-packages puts the bundled engine's parent folder on
``sys.path`` and installs the engine's torchvision import hook (``engine/compat/torchvision_ops.py``,
as ``resources/scripts/install.sh`` does for the repository's ``.venv``): where torchvision's compiled
operators cannot load (a CUDA torchvision beside a CPU torch), ``open_clip`` and ``segment_anything``
still import. The last step checks exactly that, with GDAL, in the new environment.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from qgis.core import QgsTask

from .paths import engine_source_dir
from .settings import venv_python

PATH_FILE_NAME = "rs_ovseg_engine.pth"
# What the engine needs at run time; the set-up fails with this command's message if any is missing.
CHECK_IMPORTS = "import torch, open_clip, segment_anything; from osgeo import gdal; import engine"
# How long the interpreter may take to say where its site-packages are (seconds).
QUERY_TIMEOUT_S = 60

Log = Callable[[str, str], None]


class EngineSetupError(Exception):
    """A set-up step failed; the message names the step, the details are in the log."""


def engine_requirements(pyproject: Path) -> list[str]:
    """The ``[project] dependencies`` list of ``pyproject.toml`` (read without tomllib: QGIS may run
    Python 3.9, which has none)."""
    text = pyproject.read_text(encoding="utf-8")
    match = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.MULTILINE | re.DOTALL)
    if match is None:
        raise ValueError(f"{pyproject} has no [project] dependencies list")
    return re.findall(r'"([^"]+)"', match.group(1))


def setup_commands(base_python: str, venv: Path, source_root: Path) -> list[list[str]]:
    """The argument lists that build the environment (no shell): venv, pip upgrade, dependencies."""
    python = str(venv_python(venv))
    requirements = engine_requirements(source_root / "pyproject.toml")
    return [
        [base_python, "-m", "venv", "--system-site-packages", str(venv)],
        [python, "-m", "pip", "install", "--upgrade", "pip"],
        [python, "-m", "pip", "install", "-c", str(source_root / "constraints.txt"), *requirements],
    ]


def check_command(venv: Path) -> list[str]:
    """Imports everything the worker needs, in the new environment (run after the ``.pth`` file)."""
    return [str(venv_python(venv)), "-c", CHECK_IMPORTS]


def path_file_lines(engine_parent: Path) -> list[str]:
    """The ``.pth`` lines: the engine's parent folder, then the torchvision import hook."""
    return [
        str(engine_parent),
        "import engine.compat.torchvision_ops as _rs_ovseg_tv; _rs_ovseg_tv.install_import_hook()",
    ]


def site_packages(python: Path) -> Path:
    """The environment's site-packages folder (``purelib``), asked of its own interpreter."""
    completed = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        timeout=QUERY_TIMEOUT_S,
        check=False,
        creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
    )
    if completed.returncode != 0 or not completed.stdout.strip():
        raise EngineSetupError(f"{python} could not name its site-packages: {completed.stderr.strip()}")
    return Path(completed.stdout.strip())


def write_path_file(venv: Path, engine_parent: Path) -> Path:
    """Writes ``rs_ovseg_engine.pth`` into the environment; returns its path."""
    path = site_packages(venv_python(venv)) / PATH_FILE_NAME
    path.write_text("\n".join(path_file_lines(engine_parent)) + "\n", encoding="utf-8")
    return path


def run_logged(argv: list[str], log: Log, is_cancelled: Callable[[], bool]) -> int:
    """Runs one command, every output line to ``log``; kills it when ``is_cancelled()`` turns true."""
    log("info", "$ " + " ".join(argv))
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
    )
    for line in process.stdout:
        log("info", line.rstrip())
        if is_cancelled():
            process.kill()
            break
    return process.wait()


def set_up_environment(
    base_python: str,
    venv: Path,
    source_root: Path,
    log: Log,
    is_cancelled: Callable[[], bool] = lambda: False,
    on_progress: Callable[[float], None] = lambda percent: None,
) -> None:
    """Creates ``venv`` with every dependency, links the engine in, and checks the imports.

    ``source_root`` holds ``engine/``, ``pyproject.toml`` and ``constraints.txt`` (the plugin folder,
    or a checkout). Raises EngineSetupError (message "cancelled" when cancelled).
    """
    commands = setup_commands(base_python, venv, source_root)
    steps = len(commands) + 2  # + the .pth file + the import check
    for step, argv in enumerate(commands, start=1):
        code = run_logged(argv, log, is_cancelled)
        if is_cancelled():
            raise EngineSetupError("cancelled")
        if code != 0:
            command = " ".join(argv[:4])
            raise EngineSetupError(f"step {step} failed with code {code}: {command} ...; see the log")
        on_progress(100.0 * step / steps)
    path = write_path_file(venv, source_root)
    log("info", f"wrote {path}")
    on_progress(100.0 * (steps - 1) / steps)
    if run_logged(check_command(venv), log, is_cancelled) != 0:
        raise EngineSetupError(
            "the new environment cannot import the engine's dependencies (torch, open_clip, "
            "segment_anything, osgeo.gdal): see the log"
        )
    on_progress(100.0)


class EngineSetupTask(QgsTask):
    """Runs ``set_up_environment`` in QGIS's task manager; cancel stops the current step."""

    def __init__(self, base_python: str, venv: Path, log: Log):
        super().__init__("RS OVSeg: set up engine", QgsTask.CanCancel)
        self.base_python = base_python
        self.source_root = engine_source_dir().parent
        self.commands = setup_commands(base_python, venv, self.source_root)
        self.venv = venv
        self.log = log
        self.error = ""

    def run(self) -> bool:
        try:
            set_up_environment(
                self.base_python, self.venv, self.source_root, self.log, self.isCanceled, self.setProgress
            )
        except (EngineSetupError, OSError, subprocess.TimeoutExpired) as error:
            self.error = str(error)
            return False
        return True
