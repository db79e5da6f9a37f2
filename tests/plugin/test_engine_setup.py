""" "Set up engine" without the network-heavy pip step: a real virtual environment from Debian's Python
with the system site-packages, the engine linked in by the .pth file, and the final import check.

The full set-up (pip installing torch and friends) takes minutes and is run by hand, not here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rs_ovseg_qgis.core import engine_setup, settings
from rs_ovseg_qgis.core.engine_setup import EngineSetupError, path_file_lines, set_up_environment
from rs_ovseg_qgis.core.paths import engine_source_dir

SYSTEM_PYTHON = Path("/usr/bin/python3")
needs_system_python = pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no /usr/bin/python3")


@needs_system_python
def test_the_environment_sees_gdal_and_the_engine_with_its_import_hook(tmp_path, monkeypatch):
    root = engine_source_dir().parent
    venv = tmp_path / "venv"
    only_venv = [[str(SYSTEM_PYTHON), "-m", "venv", "--system-site-packages", "--without-pip", str(venv)]]
    monkeypatch.setattr(engine_setup, "setup_commands", lambda *args: only_venv)
    # The check imports torch, which only pip would install: here it must fail with a clear message.
    monkeypatch.setattr(engine_setup, "CHECK_IMPORTS", "import torch_that_pip_would_install")
    log: list[str] = []
    with pytest.raises(EngineSetupError, match="cannot import the engine's dependencies"):
        set_up_environment(str(SYSTEM_PYTHON), venv, root, lambda level, message: log.append(message))
    assert any("ModuleNotFoundError" in line for line in log)  # pip's and the check's output reach the log
    pth = next(venv.glob("lib/python3*/site-packages/rs_ovseg_engine.pth"))
    assert pth.read_text().splitlines() == path_file_lines(root)
    probe = (
        "import sys, engine; from osgeo import gdal; "
        "from engine.compat.torchvision_ops import _TorchvisionFinder; "
        "print(engine.__file__); print(any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only the .pth may find the engine
    command = [str(settings.venv_python(venv)), "-c", probe]
    completed = subprocess.run(command, capture_output=True, text=True, check=True, cwd=tmp_path, env=env)
    engine_file, hooked = completed.stdout.split()
    assert Path(engine_file) == root / "engine" / "__init__.py" and hooked == "True"


def test_a_failing_step_names_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(
        engine_setup, "setup_commands", lambda *args: [[sys.executable, "-c", "raise SystemExit(3)"]]
    )
    with pytest.raises(EngineSetupError, match="step 1 failed with code 3"):
        set_up_environment(sys.executable, tmp_path / "venv", engine_source_dir().parent, lambda *a: None)


def test_the_base_python_is_the_one_qgis_runs(tmp_path, monkeypatch):
    """In QGIS ``sys.executable`` is often the QGIS binary: the interpreter in its prefix is used."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    interpreter = tmp_path / "bin" / f"python{version}"
    interpreter.parent.mkdir()
    interpreter.write_text("")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "qgis"))
    monkeypatch.setattr(sys, "exec_prefix", str(tmp_path))
    if sys.platform != "win32":
        assert settings.base_python() == str(interpreter)
