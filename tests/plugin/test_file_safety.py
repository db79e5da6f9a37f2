"""The plugin never writes over the input layer's files and loses nothing when the engine dies.

Through Processing (``rs_ovseg:segment``) and through the dock, with the real engine worker on a tiny
random-weight CLIP: outputs aimed at the input's file, at one of its side files or at each other are
refused with the engine's message before anything is written; a worker killed mid-run ends the run
with a message, leaves no half-written file, and the dock runs again.
"""

from __future__ import annotations

import functools
import hashlib
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from fixtures_engine import KOELN, TINY_ENGINE_OPTIONS_JSON, needs_koeln, random_weight_engine  # noqa: F401
from fixtures_rasters import write_geotiff
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsProject, QgsRasterLayer, QgsRectangle
from qt_wait import wait_for

from rs_ovseg_qgis.core.output_files import remove_engine_leftovers, replace_atomically
from rs_ovseg_qgis.core.vocabulary import Vocabulary
from rs_ovseg_qgis.ui import dock as dock_module
from rs_ovseg_qgis.ui.dock import RsOvsegDock

RUN_TIMEOUT_S = 180


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) → a digest of its bytes."""
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# This file's waits allow RUN_TIMEOUT_S (more than qt_wait's default) unless a test says otherwise.
wait_for = functools.partial(wait_for, timeout=RUN_TIMEOUT_S)


@pytest.fixture
def imagery(tmp_path) -> Path:
    """A small georeferenced RGB GeoTIFF in its own folder, with a QGIS style saved beside it."""
    folder = tmp_path / "imagery"
    folder.mkdir()
    rng = np.random.default_rng(5)
    path = write_geotiff(folder / "scene.tif", rng.integers(0, 256, (3, 96, 128), dtype=np.uint8), pixel=1.0)
    (folder / "scene.qml").write_text("<qgis><!-- the user's own style --></qgis>\n")
    return path


def run(parameters: dict) -> dict:
    import processing

    defaults = {
        "CLASSES": "road\ntree",
        "RESOLUTION": 4.0,
        "DEVICE": 1,
        "ENGINE_OPTIONS": TINY_ENGINE_OPTIONS_JSON,
    }
    return processing.run("rs_ovseg:segment", {**defaults, **parameters})


def _as_geopackage(tif: Path) -> Path:
    gpkg = tif.with_suffix(".gpkg")
    gdal.Translate(str(gpkg), str(tif), format="GPKG")
    return gpkg


@pytest.mark.parametrize(
    ("outputs", "says"),
    [
        ({"OUTPUT": "{input}"}, r"would write over the input"),
        ({"OUTPUT": "{folder}/./scene.tif"}, r"would write over the input"),
        ({"OUTPUT": "{folder}/out.tif", "OUTPUT_CONFIDENCE": "{folder}/out.tif"}, r"same file"),
        ({"OUTPUT": "{folder}/scene.TIF"}, r"style file .*scene\.qml would write over"),
        ({"OUTPUT": "{folder}/out.tif", "OUTPUT_POLYGONS": "{gpkg}"}, r"Class polygons .* would write over"),
    ],
    ids=[
        "classes-over-input",
        "classes-over-input-dotted",
        "confidence-is-classes",
        "style-over-input-style",
        "polygons-over-input",
    ],
)
def test_processing_refuses_outputs_over_the_input(
    provider,
    random_weight_engine,  # noqa: F811 (the fixture, imported)
    imagery,
    outputs,
    says,
):
    folder = imagery.parent
    gpkg = _as_geopackage(imagery)  # a GeoPackage raster: the input of the polygons case
    source = gpkg if "OUTPUT_POLYGONS" in outputs else imagery
    filled = {key: value.format(input=source, folder=folder, gpkg=gpkg) for key, value in outputs.items()}
    before = fingerprint(folder)
    with pytest.raises(QgsProcessingException, match=says) as raised:
        run({"INPUT": str(source), **filled})
    assert "the engine failed" not in str(raised.value)  # the user's own mistake, said plainly
    assert fingerprint(folder) == before  # nothing written, nothing replaced, nothing removed


@needs_koeln
def test_polygons_replace_an_earlier_file_only_when_complete(
    provider,
    random_weight_engine,  # noqa: F811
    tmp_path,
):
    out, polygons = tmp_path / "classes.tif", tmp_path / "classes.gpkg"
    polygons.write_text("an earlier run's polygons")
    run({"INPUT": str(KOELN), "OUTPUT": str(out), "OUTPUT_POLYGONS": str(polygons), "RESOLUTION": 8.0})
    assert polygons.read_bytes().startswith(b"SQLite format 3")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "classes.gpkg",
        "classes.json",
        "classes.qml",
        "classes.tif",
        "classes.tif.aux.xml",
    ]


def test_a_failed_replacement_keeps_the_earlier_file(tmp_path):
    final = tmp_path / "polygons.gpkg"
    final.write_text("earlier")

    def half_written(staged: Path) -> None:
        staged.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_atomically(final, half_written)
    assert final.read_text() == "earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["polygons.gpkg"]


def test_leftovers_of_a_killed_engine_are_only_its_own_temporaries(tmp_path):
    names = [".out.partial-0a1b2c3d.tif", ".out.partial-0a1b2c3d.tif.aux.xml", ".out.partial-9f8e7d6c.json"]
    kept = ["out.tif", ".other.partial-0a1b2c3d.tif", "out.partial-notes.txt"]
    for name in names + kept:
        (tmp_path / name).write_text("x")
    removed = remove_engine_leftovers([tmp_path / "out.tif", None, tmp_path / "out.json"])
    assert sorted(p.name for p in removed) == sorted(names)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


# --- the dock ---------------------------------------------------------------------------------------


@pytest.fixture
def dock(qgis_iface, qgis_new_project, provider, tmp_path):
    widget = RsOvsegDock(qgis_iface.mainWindow(), qgis_iface)
    widget.output_widget.setFilePath(str(tmp_path / "out"))
    widget.vocabulary_editor.set_vocabulary(Vocabulary.from_lines("road\ntree", "town"))
    widget.engine_options_edit.setText(TINY_ENGINE_OPTIONS_JSON)
    yield widget
    if widget.run is not None and widget.run.is_running():
        widget.cancel_run()
        wait_for(lambda: not widget.run.is_running())
    widget.shutdown()
    widget.deleteLater()


def _project_state():
    project = QgsProject.instance()
    return sorted(project.mapLayers()), len(project.layerTreeRoot().children())


def test_the_dock_refuses_to_write_over_the_input_layer(
    dock,
    random_weight_engine,  # noqa: F811
    imagery,
    monkeypatch,
):
    layer = QgsRasterLayer(str(imagery), "scene", "gdal")
    QgsProject.instance().addMapLayer(layer)
    dock.layer_combo.setLayer(layer)
    dock.extent_widget.setOutputExtentFromUser(layer.extent(), layer.crs())
    dock.gsd_spin.setValue(4.0)
    planned = dock_module.plan_run_files

    def onto_the_input(directory, name, when):  # as if the chosen names fell on the input's file
        files = planned(directory, name, when)
        return {**files, "classes": imagery}

    monkeypatch.setattr(dock_module, "plan_run_files", onto_the_input)
    before_files, before_project = fingerprint(imagery.parent), _project_state()
    dock.run_button.click()
    wait_for(lambda: dock.run.status is not None)
    assert dock.run.status == "failed"
    assert "would write over the input" in dock.last_message[0]
    assert fingerprint(imagery.parent) == before_files
    assert _project_state() == before_project  # no half-added group
    assert dock.run_button.isEnabled()


def test_a_run_that_cannot_be_prepared_ends_with_the_reason(
    dock,
    random_weight_engine,  # noqa: F811
    imagery,
):
    layer = QgsRasterLayer(str(imagery), "scene", "gdal")
    QgsProject.instance().addMapLayer(layer)
    dock.layer_combo.setLayer(layer)
    far_away = QgsRectangle(0, 0, 100, 100)  # the scene lies at 356 km east: no overlap
    dock.extent_widget.setOutputExtentFromUser(far_away, layer.crs())
    before = _project_state()
    dock.run_button.click()
    wait_for(lambda: dock.run.status is not None, timeout=30)  # the run used to wait here for ever
    assert dock.run.status == "failed"
    assert "extent" in dock.last_message[0]
    assert _project_state() == before
    assert dock.run_button.isEnabled() and not dock.cancel_button.isEnabled()


@needs_koeln
def test_a_worker_killed_mid_run_ends_with_a_message_and_the_dock_runs_again(
    dock,
    random_weight_engine,  # noqa: F811
    tmp_path,
):
    layer = QgsRasterLayer(str(KOELN), "koeln", "gdal")
    QgsProject.instance().addMapLayer(layer)
    dock.layer_combo.setLayer(layer)
    dock.extent_widget.setOutputExtentFromUser(layer.extent(), layer.crs())
    dock.gsd_spin.setValue(0.5)  # the whole tile at full resolution: long enough to be killed
    before = _project_state()
    dock.run_button.click()
    out = tmp_path / "out"
    wait_for(lambda: dock.progress_bar.value() > 0 or dock.run.status is not None)
    wait_for(lambda: any(".partial-" in p.name for p in out.iterdir()) or dock.run.status is not None)
    assert dock.run.status is None, dock.status_label.text()  # still running: its outputs half-written
    os.kill(random_weight_engine.pid, signal.SIGKILL)
    wait_for(lambda: dock.run.status is not None)
    assert dock.run.status == "failed"
    assert "killed by signal 9" in dock.last_message[0]
    assert not list(out.iterdir())  # the half-written outputs are gone
    assert _project_state() == before
    assert dock.run_button.isEnabled() and not dock.cancel_button.isEnabled()
    # the dock is usable: the next run starts a fresh worker and succeeds
    dock.extent_widget.setOutputExtentFromUser(
        QgsRectangle(346_000, 5_647_800, 346_200, 5_648_000), layer.crs()
    )
    dock.gsd_spin.setValue(4.0)
    dock.run_button.click()
    wait_for(lambda: dock.run.status is not None)
    assert dock.run.status == "ok", dock.status_label.text()
