"""``rs_ovseg:segment`` with the real engine worker (tiny random-weight CLIP) on a real OpenEarthMap tile."""

from __future__ import annotations

import os
import signal

import pytest
from fixtures_engine import KOELN, TINY_ENGINE_OPTIONS_JSON, needs_koeln, random_weight_engine  # noqa: F401
from osgeo import gdal, ogr
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsPalettedRasterRenderer,
    QgsProcessingException,
    QgsRasterLayer,
    QgsRectangle,
    QgsReferencedRectangle,
)

from rs_ovseg_qgis.core.capture import transform_extent

CLASSES = "building,roof,house\nroad\ntree,forest\nwater"
NAMES = ["building", "road", "tree", "water"]


def run(parameters: dict) -> dict:
    import processing

    defaults = {"CLASSES": CLASSES, "RESOLUTION": 4.0, "DEVICE": 1}
    defaults["ENGINE_OPTIONS"] = TINY_ENGINE_OPTIONS_JSON
    return processing.run("rs_ovseg:segment", {**defaults, **parameters})


def test_the_algorithm_is_registered_with_the_issue_parameters(provider):
    algorithm = QgsApplication.processingRegistry().algorithmById("rs_ovseg:segment")
    names = [p.name() for p in algorithm.parameterDefinitions()]
    expected = ["INPUT", "EXTENT", "CLASSES", "METHOD", "RESOLUTION", "DEVICE", "OUTPUT", "OUTPUT_POLYGONS"]
    assert set(expected) <= set(names)


@needs_koeln
def test_segment_gives_a_paletted_layer_named_by_the_vocabulary(
    provider,
    random_weight_engine,  # noqa: F811 (the fixture, imported)
    tmp_path,
):
    out, polygons = tmp_path / "classes.tif", tmp_path / "classes.gpkg"
    result = run({"INPUT": str(KOELN), "OUTPUT": str(out), "OUTPUT_POLYGONS": str(polygons)})
    assert result["OUTPUT"] == str(out) and os.path.exists(result["SIDECAR"])
    layer = QgsRasterLayer(str(out), "classes", "gdal")  # styled by the .qml written beside it
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)
    assert [c.label for c in layer.renderer().classes()] == NAMES
    dataset = gdal.Open(str(out))
    # The model works at 4 m per pixel; the classes come back on the input's 0.5 m grid.
    assert (dataset.RasterXSize, dataset.RasterYSize) == (1000, 1000)
    values = set(dataset.GetRasterBand(1).ReadAsArray().ravel().tolist())
    assert values <= {0, 1, 2, 3, 4}
    source = ogr.Open(str(polygons))  # held: the layer dies with its data source
    features = list(source.GetLayer(0))
    assert features and {f.GetField("class_name") for f in features} <= set(NAMES)
    # Polygon areas add up to the classified pixels' area (0.25 m² each).
    classified = int((dataset.GetRasterBand(1).ReadAsArray() > 0).sum())
    assert sum(f.GetField("area_m2") for f in features) == pytest.approx(classified * 0.25)


@needs_koeln
def test_an_extent_in_another_crs_is_clipped_in_the_layer_crs(
    provider,
    random_weight_engine,  # noqa: F811 (the fixture, imported)
    tmp_path,
):
    utm = QgsCoordinateReferenceSystem("EPSG:25832")
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    wanted = QgsRectangle(346_100, 5_647_700, 346_300, 5_647_900)  # 200 m x 200 m inside the tile
    in_degrees = transform_extent(wanted, utm, wgs84)
    out = tmp_path / "window.tif"
    run({"INPUT": str(KOELN), "EXTENT": QgsReferencedRectangle(in_degrees, wgs84), "OUTPUT": str(out)})
    dataset = gdal.Open(str(out))
    x0, step, _, y1, _, _ = dataset.GetGeoTransform()
    bounds = (x0, y1 - dataset.RasterYSize * step, x0 + dataset.RasterXSize * step, y1)
    # The degrees box is a little larger than the UTM square it came from; the output snaps to 0.5 m.
    expected = transform_extent(in_degrees, wgs84, utm)
    got_expected = (expected.xMinimum(), expected.yMinimum(), expected.xMaximum(), expected.yMaximum())
    assert bounds == pytest.approx(got_expected, abs=0.5)
    assert "25832" in dataset.GetProjection()


@needs_koeln
def test_a_dead_worker_is_restarted_and_the_next_run_works(
    provider,
    random_weight_engine,  # noqa: F811 (the fixture, imported)
    tmp_path,
):
    random_weight_engine.request("info")
    starts = random_weight_engine.starts
    process = random_weight_engine._process
    os.kill(process.pid, signal.SIGKILL)
    process.wait(5)
    run({"INPUT": str(KOELN), "OUTPUT": str(tmp_path / "after.tif"), "RESOLUTION": 8.0})
    assert (tmp_path / "after.tif").exists()
    assert random_weight_engine.starts == starts + 1
    assert "killed by signal 9" in random_weight_engine.last_exit_reason


@needs_koeln
def test_engine_user_errors_reach_processing(
    provider,
    random_weight_engine,  # noqa: F811 (the fixture, imported)
    tmp_path,
):
    with pytest.raises(QgsProcessingException, match="unknown option"):
        run(
            {
                "INPUT": str(KOELN),
                "OUTPUT": str(tmp_path / "x.tif"),
                "ENGINE_OPTIONS": '{"atention": "sclip"}',
            }
        )
    with pytest.raises(QgsProcessingException, match="appears twice"):
        run({"INPUT": str(KOELN), "OUTPUT": str(tmp_path / "x.tif"), "CLASSES": "road\nroad"})


def test_test_engine_reports_interpreter_versions_and_weights(random_weight_engine):  # noqa: F811
    from rs_ovseg_qgis.core.diagnostics import EngineDiagnosticsTask

    task = EngineDiagnosticsTask()
    assert task.run() and task.ok, task.report
    assert "engine_version: 0.1.0" in task.report and "torch:" in task.report
    assert "weights present:" in task.report and "openai-vit-b-16" in task.report


def test_set_up_engine_installs_the_pyproject_dependencies_under_the_constraints(tmp_path):
    from rs_ovseg_qgis.core.engine_setup import engine_requirements, setup_commands
    from rs_ovseg_qgis.core.paths import engine_source_dir

    root = engine_source_dir().parent
    assert "open_clip_torch" in engine_requirements(root / "pyproject.toml")
    commands = setup_commands("/usr/bin/python3", tmp_path / "venv", root)
    # --system-site-packages: GDAL's bindings come from the interpreter QGIS runs (core/engine_setup.py).
    assert commands[0] == ["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(tmp_path / "venv")]
    assert commands[-1][:6] == [
        str(tmp_path / "venv/bin/python"),
        "-m",
        "pip",
        "install",
        "-c",
        str(root / "constraints.txt"),
    ]
    assert commands[-1][6:] == engine_requirements(root / "pyproject.toml")
