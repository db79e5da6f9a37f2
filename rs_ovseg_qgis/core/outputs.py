"""Where a run's files go: a folder the user chooses (default per project), never the plugin folder,
and names that never replace an existing file."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from qgis.core import QgsApplication, QgsProject

from ..definitions import PROJECT_OUTPUT_DIR, PROJECT_SCOPE
from .paths import is_inside_plugin


class OutputLocationError(ValueError):
    """The chosen output folder cannot be used; the message says why."""


def default_output_dir(project: QgsProject | None = None) -> Path:
    """``<project folder>/rs_ovseg_outputs`` for a saved project, else one in the QGIS profile."""
    project = project or QgsProject.instance()
    home = project.homePath()
    if home:
        return Path(home) / "rs_ovseg_outputs"
    return Path(QgsApplication.qgisSettingsDirPath()) / "rs_ovseg" / "outputs"


def output_dir(project: QgsProject | None = None) -> Path:
    """The folder stored with the project, else the default."""
    project = project or QgsProject.instance()
    chosen, found = project.readEntry(PROJECT_SCOPE, PROJECT_OUTPUT_DIR, "")
    return Path(chosen) if found and chosen else default_output_dir(project)


def set_output_dir(directory: str | Path | None, project: QgsProject | None = None) -> None:
    project = project or QgsProject.instance()
    if directory:
        check_output_dir(directory)
        project.writeEntry(PROJECT_SCOPE, PROJECT_OUTPUT_DIR, str(directory))
    else:
        project.removeEntry(PROJECT_SCOPE, PROJECT_OUTPUT_DIR)


def check_output_dir(directory: str | Path) -> Path:
    directory = Path(directory)
    if is_inside_plugin(directory):
        raise OutputLocationError(
            f"{directory} is inside the plugin's folder, which is replaced on every update: "
            "choose another folder"
        )
    return directory


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe form of ``text`` ("Buildings & roads" → "buildings_roads")."""
    cleaned = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()
    return cleaned[:limit] or "run"


def run_label(vocabulary_name: str, when: datetime) -> str:
    """The layer group's name: the vocabulary and the time of the run."""
    return f"{vocabulary_name} {when:%Y-%m-%d %H:%M:%S}"


def unique_stem(directory: Path, stem: str, suffixes: list[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``, ... so that no ``stem<suffix>`` exists in ``directory`` yet."""
    candidate, number = stem, 1
    while any((directory / f"{candidate}{suffix}").exists() for suffix in suffixes):
        number += 1
        candidate = f"{stem}_{number}"
    return candidate


# Every file one run may write, by role: the engine writes class raster, confidence and sidecar.
RUN_SUFFIXES = {
    "classes": ".tif",
    "sidecar": ".json",
    "style": ".qml",
    "confidence": "_confidence.tif",
    "polygons": "_polygons.gpkg",
}


def plan_run_files(directory: str | Path, vocabulary_name: str, when: datetime) -> dict[str, Path]:
    """Paths for one run's outputs, none of which exists yet (creates ``directory``)."""
    directory = check_output_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{slug(vocabulary_name)}_{when:%Y%m%d_%H%M%S}"
    stem = unique_stem(directory, stem, list(RUN_SUFFIXES.values()))
    return {role: directory / f"{stem}{suffix}" for role, suffix in RUN_SUFFIXES.items()}
