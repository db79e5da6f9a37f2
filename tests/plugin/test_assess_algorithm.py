"""``rs_ovseg:assess`` with the real engine worker: a class raster against a label raster and against
polygons; the table's rows are the report's confusion matrix, which is a plain pixel count of the inputs;
bad input gives a clear message and leaves no table, report or layer behind."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_assess import (
    EPSG,
    IGNORE,
    MAP_CLASSES,
    ORIGIN,
    PIXEL_M,
    RECTANGLES_FIELD,
    count_pairs,
    matrix_by_name,
    pixel_rectangle,
    polygon_labels,
    rectangle_wkt,
    write_class_raster,
    write_label_raster,
    write_mapping,
    write_polygons,
)
from fixtures_engine import random_weight_engine  # noqa: F401
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsField,
    QgsGeometry,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProject,
    QgsRectangle,
    QgsReferencedRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant

from rs_ovseg_qgis.core.assessment import (
    METRIC_COLUMNS,
    REFERENCE_COLUMN,
    TOTAL_COLUMN,
    count_column_names,
    read_report,
)
from rs_ovseg_qgis.processing.assess_algorithm import AssessAlgorithm

SHAPE = (30, 40)  # rows, columns: 15 m × 20 m at 0.5 m
# Reference codes of the label raster (deliberately not the map's values) and their classes.
REFERENCE_CODES = {"building": 7, "road": 3, "tree": 5}
RECTANGLES = [  # (col0, row0, col1, row1) in pixels, reference class; the rest is not assessed
    ((0, 0, 12, 10), "Building"),  # names match the map's case-insensitively
    ((12, 0, 40, 6), "road"),
    ((5, 14, 30, 30), "TREE"),
]


@pytest.fixture
def class_map(tmp_path):
    """A class raster (values 1..3, no unclassified pixels) and its labels."""
    labels = np.random.default_rng(7).integers(1, 4, SHAPE)
    return write_class_raster(tmp_path / "map.tif", labels), labels


def run(parameters: dict) -> dict:
    import processing

    return processing.run("rs_ovseg:assess", parameters)


def table_rows(table) -> dict[str, dict]:
    layer = table if isinstance(table, QgsVectorLayer) else QgsVectorLayer(str(table), "t", "ogr")
    assert layer.isValid()
    names = layer.fields().names()
    return {f[REFERENCE_COLUMN]: dict(zip(names, f.attributes())) for f in layer.getFeatures()}


def assert_table_is_the_matrix(table, report: dict) -> None:
    rows = table_rows(table)
    classes = report["classes"]
    columns = count_column_names(classes)
    assert list(rows) == classes  # a row per reference class, in the report's order
    for name, matrix_row in zip(classes, report["confusion_matrix"]):
        row = rows[name]
        assert [row[column] for column in columns] == [int(v) for v in matrix_row]
        assert row[TOTAL_COLUMN] == sum(int(v) for v in matrix_row)
        areas = report["area_estimates"]["per_class"].get(name) or {}
        expected = {metric: report["per_class"][name][metric] for metric in METRIC_COLUMNS}
        expected["mapped_ha"] = areas.get("mapped_area")
        expected["adjusted_ha"] = (areas.get("area") or {}).get("estimate")
        expected["adjusted_ci95_ha"] = (areas.get("area") or {}).get("ci95")
        for column, value in expected.items():
            if value is None:
                assert row[column] is None or row[column] == QVariant()
            else:
                assert row[column] == pytest.approx(value)


def test_the_algorithm_is_registered_with_its_parameters(provider):
    algorithm = QgsApplication.processingRegistry().algorithmById("rs_ovseg:assess")
    names = {p.name() for p in algorithm.parameterDefinitions()}
    assert {
        "INPUT",
        "REFERENCE_RASTER",
        "REFERENCE_POLYGONS",
        "REFERENCE_FIELD",
        "MAPPING",
        "IGNORE",
    } <= names
    assert {"OUTPUT_REPORT", "OUTPUT_TABLE", "OUTPUT_FIGURE"} <= names


def test_exactly_one_reference_and_a_field_for_polygons_are_asked_for(tmp_path, class_map, qgis_new_project):
    algorithm = AssessAlgorithm()
    algorithm.initAlgorithm()
    context = QgsProcessingContext()
    base = {"INPUT": str(class_map[0]), "OUTPUT_REPORT": str(tmp_path / "r.json")}
    ok, message = algorithm.checkParameterValues(base, context)
    assert not ok and "either a reference raster or reference polygons" in message
    polygons = write_polygons(tmp_path / "ref.gpkg", RECTANGLES, RECTANGLES_FIELD)
    both = {**base, "REFERENCE_RASTER": str(class_map[0]), "REFERENCE_POLYGONS": str(polygons)}
    assert not algorithm.checkParameterValues(both, context)[0]
    ok, message = algorithm.checkParameterValues({**base, "REFERENCE_POLYGONS": str(polygons)}, context)
    assert not ok and "class field" in message


def test_count_columns_never_clash_with_the_table_columns():
    assert count_column_names(["building", "Total", "IoU", "total", "road"]) == [
        "building",
        "map_Total",
        "map_IoU",
        "map_total_2",
        "road",
    ]


def test_a_label_raster_with_a_mapping_and_an_ignore_value(
    provider,
    random_weight_engine,  # noqa: F811 (the fixture, imported)
    class_map,
    tmp_path,
):
    path, labels = class_map
    rng = np.random.default_rng(11)
    # The reference agrees with the map on about 70 % of the pixels; a band of pixels is ignored.
    truth = np.where(rng.random(SHAPE) < 0.7, labels, rng.integers(1, 4, SHAPE))
    codes = np.array([0, *[REFERENCE_CODES[name] for name in MAP_CLASSES]])[truth]
    codes[:, :4] = IGNORE
    reference = write_label_raster(tmp_path / "truth.tif", codes)
    mapping = write_mapping(tmp_path / "mapping.json", REFERENCE_CODES)
    report_path, figure = tmp_path / "report.json", tmp_path / "figure.png"
    result = run(
        {
            "INPUT": str(path),
            "REFERENCE_RASTER": str(reference),
            "MAPPING": str(mapping),
            "IGNORE": IGNORE,
            "OUTPUT_REPORT": str(report_path),
            "OUTPUT_TABLE": "TEMPORARY_OUTPUT",
            "OUTPUT_FIGURE": str(figure),
        }
    )
    report = read_report(result["OUTPUT_REPORT"])
    assessed = truth.copy()
    assessed[:, :4] = 0
    assert matrix_by_name(report) == count_pairs(assessed, labels, MAP_CLASSES)
    assert_table_is_the_matrix(result["OUTPUT_TABLE"], report)
    assert result["OVERALL_ACCURACY"] == pytest.approx(float((truth[:, 4:] == labels[:, 4:]).mean()))
    assert result["MIOU"] == pytest.approx(report["miou"])
    assert figure.stat().st_size > 0 and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_extent_limits_the_assessment_and_a_reference_in_degrees_is_accepted(
    provider,
    random_weight_engine,  # noqa: F811 (the fixture, imported)
    class_map,
    tmp_path,
):
    path, labels = class_map
    codes = np.array([0, *[REFERENCE_CODES[name] for name in MAP_CLASSES]])[labels]
    utm = write_label_raster(tmp_path / "truth_utm.tif", codes)
    degrees = tmp_path / "truth_wgs84.tif"
    gdal.Warp(str(degrees), str(utm), dstSRS="EPSG:4326", resampleAlg="near")
    mapping = write_mapping(tmp_path / "mapping.json", REFERENCE_CODES)
    x0, y0 = ORIGIN
    columns = 16  # the extent: the map's first 16 columns, every row
    extent = QgsReferencedRectangle(
        QgsRectangle(x0, y0 - SHAPE[0] * PIXEL_M, x0 + columns * PIXEL_M, y0),
        QgsCoordinateReferenceSystem(f"EPSG:{EPSG}"),
    )
    clipped = run(
        {
            "INPUT": str(path),
            "REFERENCE_RASTER": str(utm),
            "MAPPING": str(mapping),
            "EXTENT": extent,
            "OUTPUT_REPORT": str(tmp_path / "clipped.json"),
            "OUTPUT_TABLE": "TEMPORARY_OUTPUT",
        }
    )
    report = read_report(clipped["OUTPUT_REPORT"])
    assert matrix_by_name(report) == count_pairs(labels[:, :columns], labels[:, :columns], MAP_CLASSES)
    # The same reference in degrees overlaps the UTM map: the plugin's check lets it through.
    result = run(
        {
            "INPUT": str(path),
            "REFERENCE_RASTER": str(degrees),
            "MAPPING": str(mapping),
            "OUTPUT_REPORT": str(tmp_path / "degrees.json"),
            "OUTPUT_TABLE": "TEMPORARY_OUTPUT",
        }
    )
    report = read_report(result["OUTPUT_REPORT"])
    assert report["assessed_pixels"] > 0
    assert_table_is_the_matrix(result["OUTPUT_TABLE"], report)


def test_polygons_from_a_layer_that_is_not_a_file(
    provider,
    random_weight_engine,  # noqa: F811 (the fixture, imported)
    class_map,
    tmp_path,
    qgis_new_project,
):
    path, labels = class_map
    layer = QgsVectorLayer("Polygon?crs=EPSG:25832", "digitised", "memory")
    layer.dataProvider().addAttributes(
        [QgsField("id", QVariant.Int), QgsField(RECTANGLES_FIELD, QVariant.String)]
    )
    layer.updateFields()
    features = []
    for number, (cells, name) in enumerate(RECTANGLES):
        feature = QgsFeature(layer.fields())
        feature.setAttributes([number, name])
        feature.setGeometry(QgsGeometry.fromWkt(rectangle_wkt(pixel_rectangle(*cells))))
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    QgsProject.instance().addMapLayer(layer)
    table = tmp_path / "matrix.gpkg"
    result = run(
        {
            "INPUT": str(path),
            "REFERENCE_POLYGONS": layer.id(),
            "REFERENCE_FIELD": RECTANGLES_FIELD,
            "OUTPUT_REPORT": str(tmp_path / "report.json"),
            "OUTPUT_TABLE": str(table),
        }
    )
    report = read_report(result["OUTPUT_REPORT"])
    truth = polygon_labels(SHAPE, RECTANGLES, MAP_CLASSES)
    assert matrix_by_name(report) == count_pairs(truth, labels, MAP_CLASSES)
    assert_table_is_the_matrix(result["OUTPUT_TABLE"], report)
    assert QgsVectorLayer(str(table), "t", "ogr").wkbType() == 100  # QgsWkbTypes.NoGeometry: a table


def test_a_reference_that_does_not_overlap_fails_clearly_and_writes_nothing(
    provider,
    random_weight_engine,  # noqa: F811 (the fixture, imported)
    class_map,
    tmp_path,
    qgis_new_project,
):
    path, labels = class_map
    far = write_label_raster(tmp_path / "far.tif", labels, origin=(456_000.0, 5_745_000.0))  # 100 km off
    report, table = tmp_path / "report.json", tmp_path / "matrix.gpkg"
    layers_before = len(QgsProject.instance().mapLayers())
    with pytest.raises(QgsProcessingException) as caught:
        run(
            {
                "INPUT": str(path),
                "REFERENCE_RASTER": str(far),
                "OUTPUT_REPORT": str(report),
                "OUTPUT_TABLE": str(table),
            }
        )
    message = str(caught.value)
    assert "does not overlap the map" in message and "far" in message
    assert not report.exists() and not table.exists()
    assert len(QgsProject.instance().mapLayers()) == layers_before


def test_classes_that_match_nothing_fail_with_the_reason_and_no_table(
    provider,
    random_weight_engine,  # noqa: F811 (the fixture, imported)
    class_map,
    tmp_path,
):
    polygons = write_polygons(tmp_path / "ref.gpkg", [((0, 0, 10, 10), "water")], RECTANGLES_FIELD)
    with pytest.raises(
        QgsProcessingException,
        match=r"no pixel was assessed: the reference's classes water match no map class \(building, road",
    ):
        run(
            {
                "INPUT": str(class_map[0]),
                "REFERENCE_POLYGONS": str(polygons),
                "REFERENCE_FIELD": RECTANGLES_FIELD,
                "OUTPUT_REPORT": str(tmp_path / "report.json"),
                "OUTPUT_TABLE": str(tmp_path / "matrix.gpkg"),
            }
        )
    assert not (tmp_path / "matrix.gpkg").exists()


def test_a_reference_that_is_all_ignored_says_so(
    provider,
    random_weight_engine,  # noqa: F811 (the fixture, imported)
    class_map,
    tmp_path,
):
    ignored = write_label_raster(tmp_path / "ignored.tif", np.full(SHAPE, IGNORE))
    with pytest.raises(QgsProcessingException, match="every reference pixel has the ignored value"):
        run(
            {
                "INPUT": str(class_map[0]),
                "REFERENCE_RASTER": str(ignored),
                "IGNORE": IGNORE,
                "OUTPUT_REPORT": str(tmp_path / "report.json"),
                "OUTPUT_TABLE": str(tmp_path / "matrix.gpkg"),
            }
        )
    assert not (tmp_path / "matrix.gpkg").exists()


def test_a_missing_field_names_the_fields_there_are(provider, class_map, tmp_path):
    polygons = write_polygons(tmp_path / "ref.gpkg", RECTANGLES, RECTANGLES_FIELD)
    with pytest.raises(QgsProcessingException, match=r'no field "class".*landcover'):
        run(
            {
                "INPUT": str(class_map[0]),
                "REFERENCE_POLYGONS": str(polygons),
                "REFERENCE_FIELD": "class",
                "OUTPUT_REPORT": str(tmp_path / "report.json"),
                "OUTPUT_TABLE": str(tmp_path / "matrix.gpkg"),
            }
        )
    assert not (tmp_path / "matrix.gpkg").exists()
