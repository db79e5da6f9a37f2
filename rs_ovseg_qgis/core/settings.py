"""User preferences (QgsSettings): which Python runs the engine, and where the managed one lives."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings

from ..definitions import SETTING_BASE_PYTHON, SETTING_PYTHON
from .paths import PLUGIN_DIR, engine_source_dir


def venv_python(venv: Path) -> Path:
    """The interpreter inside a virtual environment, on Windows or elsewhere."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def managed_venv_dir() -> Path:
    """The environment the "Set up engine" action creates: in the QGIS profile, never the plugin folder."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "rs_ovseg" / "venv"


def development_python() -> Path | None:
    """The repository's ``.venv`` interpreter when the plugin runs from a checkout (not from a zip)."""
    engine = engine_source_dir()
    if engine.parent == PLUGIN_DIR:  # bundled engine: this is an installed plugin
        return None
    candidate = venv_python(engine.parent / ".venv")
    return candidate if candidate.exists() else None


def default_engine_python() -> Path:
    return development_python() or venv_python(managed_venv_dir())


def engine_python() -> Path:
    """The interpreter chosen in the settings, else the development or the managed environment's."""
    chosen = str(QgsSettings().value(SETTING_PYTHON, "", type=str) or "").strip()
    return Path(chosen) if chosen else default_engine_python()


def set_engine_python(path: str | Path | None) -> None:
    """Remember the user's interpreter; ``None`` or "" goes back to the default."""
    if path:
        QgsSettings().setValue(SETTING_PYTHON, str(path))
    else:
        QgsSettings().remove(SETTING_PYTHON)


def base_python() -> str | None:
    """A Python 3 that can create the managed environment (``python -m venv``) and sees GDAL.

    The user's choice first; else the interpreter QGIS itself runs, because that one has ``osgeo.gdal``
    (see core/engine_setup.py). QGIS's ``sys.executable`` is often the QGIS binary, so the interpreter
    is also looked for in ``sys.exec_prefix`` (OSGeo4W: ``python.exe`` there; macOS bundle and Linux:
    ``bin/python3.X``). ``python3`` on PATH is the last resort: it may lack GDAL.
    """
    chosen = str(QgsSettings().value(SETTING_BASE_PYTHON, "", type=str) or "").strip()
    if chosen:
        return chosen
    for candidate in qgis_python_candidates():
        if candidate.is_file():
            return str(candidate)
    return shutil.which("python3") or shutil.which("python")


def qgis_python_candidates() -> list[Path]:
    """Where the interpreter running QGIS may be, most specific first."""
    candidates = []
    if Path(sys.executable).name.lower().startswith("python"):
        candidates.append(Path(sys.executable))
    prefix = Path(sys.exec_prefix)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if os.name == "nt":
        candidates.append(prefix / "python.exe")
    else:
        candidates += [prefix / "bin" / f"python{version}", prefix / "bin" / "python3"]
    return candidates
