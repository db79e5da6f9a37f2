"""The dock's paths beyond a file layer and a typed extent: a rectangle drawn on the map, the selected
features' extent, polygons and confidence in the run's group, and web sources served on 127.0.0.1 (XYZ
tiles cut from the Köln tile with gdal2tiles; a WMS from QGIS Server) captured as their source shows."""

from __future__ import annotations

import json
import math
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from fixtures_engine import KOELN, TINY_ENGINE_OPTIONS_JSON, needs_koeln, random_weight_engine  # noqa: F401
from map_servers import LocalServer, cut_xyz_tiles, wms_uri, xyz_uri
from osgeo import gdal
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication, QPoint, Qt
from qgis.PyQt.QtTest import QTest
from qt_wait import wait_for
from test_dock import add_koeln, dock, tiny_vocabulary  # noqa: F401

from rs_ovseg_qgis.core.capture import capture_rendered
from rs_ovseg_qgis.definitions import SOURCE_MAP

UTM = QgsCoordinateReferenceSystem("EPSG:25832")
# 300 m in the middle of the Köln tile (346000–346500 E, 5647500–5648000 N).
MIDDLE = QgsRectangle(346_100, 5_647_600, 346_400, 5_647_900)


def warped_source(extent: QgsRectangle, gsd_m: float, path) -> np.ndarray:
    """The Köln tile on the grid of ``extent`` at ``gsd_m``, resampled by GDAL alone (the reference)."""
    dataset = gdal.Warp(
        str(path),
        str(KOELN),
        outputBounds=(extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()),
        xRes=gsd_m,
        yRes=gsd_m,
        resampleAlg="bilinear",
    )
    pixels = dataset.ReadAsArray()[:3].astype(np.float64)
    dataset = None
    return pixels


def rendered_pixels(path) -> np.ndarray:
    dataset = gdal.Open(str(path))
    pixels = dataset.ReadAsArray()[:3].astype(np.float64)
    dataset = None
    return pixels


def assert_shows_the_tile(rendered: np.ndarray, reference: np.ndarray) -> None:
    """Same scene: the rendered pixels follow the tile's (correlation), at its brightness (mean error)."""
    assert rendered.shape == reference.shape
    assert rendered.std() > 10  # not a blank or failed request
    correlation = np.corrcoef(rendered.ravel(), reference.ravel())[0, 1]
    assert correlation > 0.85, correlation
    assert np.abs(rendered - reference).mean() < 20


@pytest.fixture(scope="module")
def xyz_server(tmp_path_factory):
    if not KOELN.exists():
        pytest.skip(f"{KOELN} is absent")
    if shutil.which("gdal2tiles.py") is None:
        pytest.skip("gdal2tiles.py is absent (Debian's gdal-bin)")
    tiles = cut_xyz_tiles(KOELN, tmp_path_factory.mktemp("xyz") / "tiles", zooms="16-17")
    with LocalServer("xyz", tiles) as server:
        yield server


@pytest.fixture(scope="module")
def wms_server():
    if not KOELN.exists():
        pytest.skip(f"{KOELN} is absent")
    try:
        server = LocalServer("wms", KOELN)
    except RuntimeError:
        pytest.skip("QGIS Server does not start here (Debian's python3-qgis has qgis.server)")
    with server:
        url = f"http://127.0.0.1:{server.port}/wms?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0"
        capabilities = urllib.request.urlopen(url, timeout=30).read().decode()
        if "WMS_Capabilities" not in capabilities:  # QGIS Server's WMS module: Debian's qgis-server-wms
            pytest.skip("QGIS Server has no WMS service here (install qgis-server-wms)")
        yield server


def test_an_xyz_layer_from_a_local_server_is_captured_as_the_tile_shows(
    xyz_server, qgis_new_project, tmp_path
):
    layer = QgsRasterLayer(xyz_uri(xyz_server.port, zoom_max=17, zoom_min=16), "xyz", "wms")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    capture = capture_rendered([layer], MIDDLE, UTM, 2.0, tmp_path / "xyz.tif")
    assert capture.gsd == 2.0 and capture.rendered
    assert_shows_the_tile(rendered_pixels(capture.path), warped_source(MIDDLE, 2.0, tmp_path / "ref.tif"))


def test_a_wms_layer_from_a_local_qgis_server_is_captured_as_the_tile_shows(
    wms_server, qgis_new_project, tmp_path
):
    layer = QgsRasterLayer(wms_uri(wms_server.port), "wms", "wms")
    assert layer.isValid(), layer.error().summary()
    QgsProject.instance().addMapLayer(layer)
    capture = capture_rendered([layer], MIDDLE, UTM, 1.0, tmp_path / "wms.tif")
    assert_shows_the_tile(rendered_pixels(capture.path), warped_source(MIDDLE, 1.0, tmp_path / "ref.tif"))


def test_what_the_map_shows_over_an_xyz_layer_is_segmented(
    dock,  # noqa: F811
    xyz_server,
    qgis_iface,
    random_weight_engine,  # noqa: F811
):
    layer = QgsRasterLayer(xyz_uri(xyz_server.port, zoom_max=17, zoom_min=16), "xyz", "wms")
    QgsProject.instance().addMapLayer(layer)
    qgis_iface.mapCanvas().setLayers([layer])
    tiny_vocabulary(dock)
    dock.source_combo.setCurrentIndex(SOURCE_MAP)
    dock.extent_widget.setOutputExtentFromUser(MIDDLE, UTM)
    dock.last_estimate = None
    dock.gsd_spin.setValue(0.8)
    wait_for(lambda: dock.last_estimate is not None, 60)
    promised = dock.last_estimate
    assert promised["working_size"] == [375, 375]  # 300 m at 0.8 m per pixel, as the panel says
    dock.run_button.click()
    wait_for(lambda: dock.run.status is not None)
    assert dock.run.status == "ok", dock.status_label.text()
    classes = QgsProject.instance().layerTreeRoot().children()[0].findLayers()[0].layer()
    assert (classes.width(), classes.height()) == (375, 375)  # rendered at 0.8 m per pixel
    assert classes.crs() == UTM
    assert classes.extent().toRectF().getCoords() == pytest.approx(MIDDLE.toRectF().getCoords())
    # The run did what the panel promised: the model saw the rendered pixels one to one.
    record = json.loads(Path(classes.source()).with_suffix(".json").read_text())
    assert record["settings"]["working_size"] == promised["working_size"]
    assert record["windows"]["crops_evaluated"] == promised["crop_evaluations"] > 1


def test_a_rectangle_drawn_on_the_map_becomes_the_extent_and_is_outlined(dock, qgis_canvas, qgis_iface):  # noqa: F811
    window, size = qgis_iface.mainWindow(), qgis_canvas.size()
    window.show()  # the dock is really shown (offscreen): the outline follows that
    try:
        drawn_and_outlined(dock, qgis_canvas)
    finally:
        window.hide()
        qgis_canvas.resize(size)  # as the other tests know it
        QCoreApplication.processEvents()


def drawn_and_outlined(dock, canvas) -> None:  # noqa: F811
    canvas.setDestinationCrs(UTM)
    canvas.setExtent(QgsRectangle(346_000, 5_647_500, 346_600, 5_647_900))
    canvas.refresh()
    QCoreApplication.processEvents()
    dock.show()
    dock.extent_widget.setMapCanvas(canvas)
    dock.extent_widget.setOutputExtentFromDrawOnCanvas()  # the widget's "Draw on Canvas"
    viewport = canvas.viewport()
    w, h = viewport.width(), viewport.height()
    start, end = QPoint(w // 6, h // 5), QPoint(w * 2 // 3, h * 3 // 4)
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    for step in range(1, 6):
        QTest.mouseMove(viewport, start + (end - start) * (step / 5))
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
    QCoreApplication.processEvents()
    pixel_to_map = canvas.getCoordinateTransform()
    corner_a, corner_b = pixel_to_map.toMapCoordinates(start), pixel_to_map.toMapCoordinates(end)
    drawn = QgsRectangle(corner_a, corner_b)
    extent = dock.current_extent()
    assert extent.crs() == UTM
    assert extent.toRectF().getCoords() == pytest.approx(drawn.toRectF().getCoords(), abs=1.0)
    width_px, height_px = math.ceil(extent.width() / 2.0), math.ceil(extent.height() / 2.0)  # whole pixels
    dock.gsd_spin.setValue(2.0)
    assert dock.model_label.text() == f"{width_px:,} × {height_px:,} px"
    outline = dock.extent_outline.band.asGeometry().boundingBox()
    assert outline.toRectF().getCoords() == pytest.approx(drawn.toRectF().getCoords(), abs=1.0)
    dock.close()
    QCoreApplication.processEvents()
    assert dock.extent_outline.band.asGeometry().isEmpty()  # no outline while the panel is closed


def test_the_selected_features_give_the_extent(dock, qgis_iface, qgis_new_project):  # noqa: F811
    parcels = QgsVectorLayer("Polygon?crs=EPSG:25832", "parcels", "memory")
    boxes = [
        QgsRectangle(346_000, 5_647_500, 346_050, 5_647_550),
        QgsRectangle(346_200, 5_647_600, 346_330, 5_647_700),
    ]
    features = []
    for box in [*boxes, QgsRectangle(346_400, 5_647_800, 346_450, 5_647_900)]:
        feature = QgsFeature()
        feature.setGeometry(QgsGeometry.fromRect(box))
        features.append(feature)
    parcels.dataProvider().addFeatures(features)
    QgsProject.instance().addMapLayer(parcels)
    qgis_iface.setActiveLayer(parcels)
    dock.selection_button.click()  # nothing selected yet: the user is told what to do
    assert "select features" in dock.last_message[0]
    ids = sorted(f.id() for f in parcels.getFeatures())
    parcels.selectByIds(ids[:2])
    dock.selection_button.click()
    extent = dock.current_extent()
    expected = QgsRectangle(boxes[0])
    expected.combineExtentWith(boxes[1])
    assert extent.crs() == UTM
    assert extent.toRectF().getCoords() == pytest.approx(expected.toRectF().getCoords())
    dock.gsd_spin.setValue(1.0)
    assert dock.model_label.text() == "330 × 200 px"
    assert dock.size_label.text() == "330 m × 200 m (6.6 ha)"


@needs_koeln
def test_polygons_and_confidence_join_the_runs_group_styled(
    dock,  # noqa: F811
    random_weight_engine,  # noqa: F811
):
    layer = add_koeln()
    dock.layer_combo.setLayer(layer)
    tiny_vocabulary(dock)
    dock.engine_options_edit.setText(TINY_ENGINE_OPTIONS_JSON)
    dock.polygons_check.setChecked(True)
    dock.confidence_check.setChecked(True)
    dock.extent_widget.setOutputExtentFromUser(MIDDLE, UTM)
    dock.gsd_spin.setValue(4.0)
    dock.run_button.click()
    wait_for(lambda: dock.run.status is not None)
    assert dock.run.status == "ok", dock.status_label.text()
    group = QgsProject.instance().layerTreeRoot().children()[0]
    nodes = {node.layer().name().rsplit(" ", 1)[-1]: node for node in group.findLayers()}
    assert set(nodes) == {"polygons", "classes", "confidence"}
    polygons = nodes["polygons"].layer()
    assert isinstance(polygons.renderer(), QgsCategorizedSymbolRenderer)
    assert [c.label() for c in polygons.renderer().categories()] == ["building", "road", "tree"]
    assert polygons.featureCount() > 0
    assert isinstance(nodes["classes"].layer().renderer(), QgsPalettedRasterRenderer)
    confidence = nodes["confidence"].layer()
    renderer = confidence.renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer)
    assert (renderer.classificationMin(), renderer.classificationMax()) == (0.0, 1.0)  # one fixed scale
    assert not nodes["confidence"].itemVisibilityChecked()  # on demand: it would hide the classes
    statistics = confidence.dataProvider().bandStatistics(1)
    assert 0.0 <= statistics.minimumValue <= statistics.maximumValue <= 1.0
    # After the run the panel asks again: the engine holds the model and has measured its speed.
    dock.last_estimate = None
    wait_for(lambda: dock.last_estimate is not None, 60)
    time = dock.last_estimate["time"]
    assert time["basis"] == "measured" and time["setup_seconds"] == 0.0
    assert "loading the model" not in dock.time_label.text()


def test_a_web_layer_as_input_defaults_to_the_screens_resolution(dock, wms_server, qgis_iface):  # noqa: F811
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(UTM)
    canvas.setExtent(MIDDLE)
    layer = QgsRasterLayer(wms_uri(wms_server.port), "wms", "wms")
    QgsProject.instance().addMapLayer(layer)
    dock.layer_combo.setLayer(layer)
    # A WMS layer has no ground pixel size of its own (QGIS reports 1 map unit): it is rendered at the
    # resolution first, so the default is what the map shows now, as for "What the map shows".
    screen_m = round(canvas.mapUnitsPerPixel(), 2)  # UTM: one map unit is a metre
    assert dock.gsd_spin.value() == pytest.approx(screen_m)
    assert layer.rasterUnitsPerPixelX() == 1.0 and screen_m != pytest.approx(round(1000 / 448, 2))


def test_the_outline_is_drawn_in_the_maps_crs(qgis_canvas):
    from qgis.core import QgsCoordinateTransform, QgsReferencedRectangle

    from rs_ovseg_qgis.ui.extent_outline import ExtentOutline

    mercator = QgsCoordinateReferenceSystem("EPSG:3857")
    qgis_canvas.setDestinationCrs(mercator)
    outline = ExtentOutline(qgis_canvas)
    try:
        outline.show(QgsReferencedRectangle(MIDDLE, UTM))
        drawn = outline.band.asGeometry().boundingBox()
        expected = QgsCoordinateTransform(UTM, mercator, QgsProject.instance()).transformBoundingBox(MIDDLE)
        assert drawn.toRectF().getCoords() == pytest.approx(expected.toRectF().getCoords(), abs=0.5)
        outline.show(None)
        assert outline.band.asGeometry().isEmpty()
    finally:
        outline.remove()
