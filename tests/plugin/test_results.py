"""Results: paletted class raster with the vocabulary's legend, polygons with class and area, one
group per run placed above the input layer."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_rasters import write_geotiff
from osgeo import ogr
from qgis.core import QgsPalettedRasterRenderer, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtGui import QColor

from rs_ovseg_qgis.core.polygons import polygonize
from rs_ovseg_qgis.core.results import RunOutputs, add_run_to_project
from rs_ovseg_qgis.core.styling import save_default_style, style_class_layer
from rs_ovseg_qgis.core.vocabulary import Vocabulary

VOCABULARY = Vocabulary.from_json(
    '{"name": "town", "classes": [{"name": "building", "synonyms": ["roof"], "color": "#de1f07"},'
    ' {"name": "road", "color": "#404040"}, {"name": "water", "color": "#0045ff"}]}'
)


@pytest.fixture
def class_raster(tmp_path):
    labels = np.zeros((40, 60), np.uint8)
    labels[:20, :30] = 1
    labels[25:, 10:50] = 2
    labels[5:10, 40:45] = 1  # a second, separate building
    labels[30:35, 55:58] = 3
    table = {0: (0, 0, 0), 1: (222, 31, 7), 2: (64, 64, 64), 3: (0, 69, 255)}
    return write_geotiff(tmp_path / "classes.tif", labels[None], pixel=2.0, colour_table=table), labels


def test_the_class_raster_gets_the_vocabulary_names_and_colours(class_raster):
    layer = QgsRasterLayer(str(class_raster[0]), "classes", "gdal")
    style_class_layer(layer, VOCABULARY)
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [(c.value, c.label) for c in renderer.classes()] == [(1, "building"), (2, "road"), (3, "water")]
    assert [c.color.name() for c in renderer.classes()] == ["#de1f07", "#404040", "#0045ff"]
    legend = [label for label, _ in renderer.legendSymbologyItems()]
    assert legend == ["building", "road", "water"]


def test_a_saved_default_style_styles_the_file_wherever_it_is_opened(class_raster):
    path = class_raster[0]
    layer = QgsRasterLayer(str(path), "classes", "gdal")
    style_class_layer(layer, VOCABULARY)
    save_default_style(layer, str(path.with_suffix(".qml")))
    reopened = QgsRasterLayer(str(path), "again", "gdal")
    assert [c.label for c in reopened.renderer().classes()] == ["building", "road", "water"]


def test_polygons_carry_class_names_and_areas_that_add_up(class_raster, tmp_path):
    path, labels = class_raster
    out = polygonize(path, tmp_path / "polygons.gpkg", VOCABULARY)
    source = ogr.Open(str(out))
    rows = [
        (f.GetField("class_id"), f.GetField("class_name"), f.GetField("area_m2")) for f in source.GetLayer(0)
    ]
    assert sorted((r[0], r[1]) for r in rows) == [(1, "building"), (1, "building"), (2, "road"), (3, "water")]
    for class_id in (1, 2, 3):
        expected = (labels == class_id).sum() * 2.0 * 2.0  # pixel count x 4 m² per pixel
        assert sum(r[2] for r in rows if r[0] == class_id) == pytest.approx(expected)
    with pytest.raises(FileExistsError):
        polygonize(path, out, VOCABULARY)


def test_a_run_becomes_a_styled_group_just_above_the_input_layer(class_raster, tmp_path, qgis_new_project):
    project = QgsProject.instance()
    rgb = write_geotiff(tmp_path / "ortho.tif", np.zeros((3, 40, 60), np.uint8), pixel=2.0)
    basemap = QgsRasterLayer(str(rgb), "basemap", "gdal")
    ortho = QgsRasterLayer(str(rgb), "ortho", "gdal")
    for layer in (basemap, ortho):  # the tree becomes: ortho, basemap
        project.addMapLayer(layer, False)
        project.layerTreeRoot().insertLayer(0, layer)
    polygons = polygonize(class_raster[0], tmp_path / "p.gpkg", VOCABULARY)
    outputs = RunOutputs(classes=class_raster[0], polygons=polygons)
    group = add_run_to_project(outputs, VOCABULARY, "town 2025-01-01 10:00:00", project, above=basemap)
    names = [node.name() for node in project.layerTreeRoot().children()]
    assert names == ["ortho", "town 2025-01-01 10:00:00", "basemap"]
    layers = [node.layer() for node in group.findLayers()]
    assert [layer.name() for layer in layers] == ["town polygons", "town classes"]
    vector, raster = layers
    assert isinstance(vector, QgsVectorLayer) and vector.featureCount() == 4
    assert [c.label() for c in vector.renderer().categories()] == ["building", "road", "water"]
    assert vector.renderer().categories()[0].symbol().color() == QColor("#de1f07")
    assert [c.label for c in raster.renderer().classes()] == ["building", "road", "water"]
