"""``rs_ovseg:train`` with the real engine worker and the tiny architecture: polygons drawn in a memory
layer (another CRS than the imagery) over a patch of the Köln tile train a model that segments; bad
input is refused with what to change, and nothing is written."""

from __future__ import annotations

import json

import pytest
from fixtures_engine import KOELN, needs_koeln, random_weight_engine  # noqa: F401
from osgeo import gdal
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsField,
    QgsGeometry,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProject,
    QgsRectangle,
    QgsSettings,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant

from rs_ovseg_qgis.core.trained_models import SETTING_TRAINED_MODELS, trained_models
from rs_ovseg_qgis.processing.segment_algorithm import SegmentAlgorithm
from rs_ovseg_qgis.processing.train_algorithm import TrainAlgorithm, parse_classes

pytestmark = needs_koeln
ORIGIN_X, ORIGIN_Y, PIXEL = 346000.0, 5648000.0, 0.5  # the Köln tile's grid, EPSG:25832
PATCH = (460, 540, 128, 128)
BOXES = {"solar panel": (470, 545, 520, 600), "field": (540, 630, 588, 668)}  # tile pixels c0, r0, c1, r1


@pytest.fixture(autouse=True)
def no_remembered_models():
    QgsSettings().remove(SETTING_TRAINED_MODELS)
    yield
    QgsSettings().remove(SETTING_TRAINED_MODELS)


@pytest.fixture
def patch(tmp_path):
    path = tmp_path / "koeln_patch.vrt"
    gdal.Translate(str(path), str(KOELN), format="VRT", srcWin=list(PATCH))
    return str(path)


def polygons_in_wgs84(boxes=BOXES) -> QgsVectorLayer:
    """A memory layer in EPSG:4326 (the imagery is in EPSG:25832) with a "kind" class field."""
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", "labels", "memory")
    layer.dataProvider().addAttributes([QgsField("kind", QVariant.String)])
    layer.updateFields()
    to_wgs84 = QgsCoordinateTransform(
        QgsCoordinateReferenceSystem("EPSG:25832"),
        QgsCoordinateReferenceSystem("EPSG:4326"),
        QgsProject.instance(),
    )
    features = []
    for name, (c0, r0, c1, r1) in boxes.items():
        rectangle = QgsRectangle(
            ORIGIN_X + PIXEL * c0, ORIGIN_Y - PIXEL * r1, ORIGIN_X + PIXEL * c1, ORIGIN_Y - PIXEL * r0
        )
        geometry = QgsGeometry.fromRect(rectangle)
        geometry.transform(to_wgs84)
        feature = QgsFeature(layer.fields())
        feature.setGeometry(geometry)
        feature.setAttribute("kind", name)
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return layer


def run(parameters: dict) -> dict:
    import processing

    return processing.run("rs_ovseg:train", parameters)


def test_classes_are_one_per_line_with_synonyms():
    assert parse_classes("building,roof\n road \n\n tree;water") == ["building,roof", "road", "tree", "water"]


def test_exactly_one_kind_of_labels_and_a_class_are_asked_for(patch, tmp_path):
    algorithm = TrainAlgorithm()
    algorithm.initAlgorithm()
    context = QgsProcessingContext()
    base = {"INPUT": [patch], "CLASSES": "field", "OUTPUT": str(tmp_path / "m.safetensors")}
    ok, message = algorithm.checkParameterValues(base, context)
    assert not ok and "either label polygons or a label raster" in message
    polygons = polygons_in_wgs84()
    ok, message = algorithm.checkParameterValues({**base, "POLYGONS": polygons}, context)
    assert not ok and "class field" in message
    ok, message = algorithm.checkParameterValues(
        {**base, "POLYGONS": polygons, "CLASS_FIELD": "kind", "CLASSES": " \n"}, context
    )
    assert not ok and "at least one class" in message


def test_train_then_segment_through_the_engine(provider, random_weight_engine, patch, tmp_path):  # noqa: F811
    out = tmp_path / "koeln.safetensors"
    labels = polygons_in_wgs84()
    result = run(
        {
            "INPUT": [patch],
            "POLYGONS": labels,
            "CLASS_FIELD": "kind",
            "CLASSES": "solar panel,solar roof\nfield",
            "STEPS": 3,
            "BATCH_SIZE": 1,
            "ARCHITECTURE": 1,  # tiny
            "OUTPUT": str(out),
        }
    )
    assert result["OUTPUT"] == str(out) and out.is_file()
    described = json.loads(out.with_suffix(".aeroseg.json").read_text())
    assert described["classes"] == [["solar panel", "solar roof"], ["field"]]
    assert described["labelled_pixels"]["solar panel"]["training"] > 2000  # reprojected polygons landed
    (listed,) = trained_models()  # offered by the dock's method choice from now on
    assert listed.path == str(out.resolve())
    assert listed.label == "AerOSeg — koeln, trained on solar panel, field"


def test_a_trained_model_is_offered_by_the_segment_algorithm(provider, random_weight_engine, patch, tmp_path):  # noqa: F811
    import processing

    from rs_ovseg_qgis.core.trained_models import remember_model

    out = tmp_path / "koeln.safetensors"
    args = {
        "images": [patch],
        "labels": str(tmp_path / "labels.tif"),
        "classes": ["solar panel", "field"],
        "out": str(out),
        "architecture": "tiny",
        "steps": 2,
        "batch_size": 1,
    }
    labels = gdal.Translate(args["labels"], patch, bandList=[1], format="GTiff")
    band = labels.GetRasterBand(1)
    values = band.ReadAsArray() * 0
    values[10:60, 10:60], values[80:120, 80:120] = 1, 2
    band.WriteArray(values)
    labels = band = None
    random_weight_engine.request("train", args)
    remember_model(out)
    (listed,) = trained_models()
    offered = SegmentAlgorithm()
    offered.initAlgorithm()
    assert offered.parameterDefinition("AEROSEG_MODEL").options() == ["none", listed.label]
    segmented = processing.run(
        "rs_ovseg:segment",
        {
            "INPUT": patch,
            "CLASSES": "solar panel\nfield\nwater",
            "AEROSEG_MODEL": 1,
            "OUTPUT": str(tmp_path / "map.tif"),
        },
    )
    written = gdal.Open(segmented["OUTPUT"])
    assert (written.RasterXSize, written.RasterYSize) == PATCH[2:]
    written = None
    record = json.loads((tmp_path / "map.json").read_text())
    assert record["method"]["method"] == "aeroseg" and record["method"]["model"]["file"] == str(out.resolve())


def test_labels_beside_the_imagery_are_refused_and_nothing_is_written(
    provider,
    random_weight_engine,  # noqa: F811
    patch,
    tmp_path,
):
    far = {name: (c0 + 4000, r0, c1 + 4000, r1) for name, (c0, r0, c1, r1) in BOXES.items()}
    out = tmp_path / "never.safetensors"
    parameters = {
        "INPUT": [patch],
        "POLYGONS": polygons_in_wgs84(far),
        "CLASS_FIELD": "kind",
        "CLASSES": "solar panel\nfield",
        "STEPS": 3,
        "ARCHITECTURE": 1,
        "OUTPUT": str(out),
    }
    with pytest.raises(QgsProcessingException, match="no labelled pixel"):
        run(parameters)
    assert not out.exists() and not out.with_suffix(".aeroseg.json").exists()
    assert trained_models() == []
