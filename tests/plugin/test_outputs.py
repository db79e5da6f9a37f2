"""Output folders and names: per-project default, never the plugin folder, never an existing file."""

from __future__ import annotations

from datetime import datetime

import pytest

from rs_ovseg_qgis.core.outputs import (
    OutputLocationError,
    default_output_dir,
    output_dir,
    plan_run_files,
    set_output_dir,
    slug,
)
from rs_ovseg_qgis.core.paths import PLUGIN_DIR

WHEN = datetime(2025, 5, 4, 3, 2, 1)


def test_names_never_repeat_an_existing_file(tmp_path):
    first = plan_run_files(tmp_path, "Buildings & roads", WHEN)
    assert first["classes"].name == "buildings_roads_20250504_030201.tif"
    first["polygons"].write_text("taken")  # any one of a run's files blocks the name
    second = plan_run_files(tmp_path, "Buildings & roads", WHEN)
    assert second["classes"].name == "buildings_roads_20250504_030201_2.tif"
    assert not any(path.exists() for path in second.values())


def test_the_plugin_folder_is_refused():
    with pytest.raises(OutputLocationError, match="plugin's folder"):
        plan_run_files(PLUGIN_DIR / "out", "x", WHEN)


def test_the_output_folder_is_stored_with_the_project(qgis_new_project, tmp_path):
    from qgis.core import QgsProject

    project = QgsProject.instance()
    assert output_dir(project) == default_output_dir(project)
    set_output_dir(tmp_path, project)
    assert output_dir(project) == tmp_path
    set_output_dir(None, project)
    assert output_dir(project) == default_output_dir(project)


def test_slug():
    assert slug("  Wasser/Water  ") == "wasser_water" and slug("***") == "run"
