"""Rasters placed by ground control points (a scan referenced in QGIS's Georeferencer) through the dock
and ``rs_ovseg:segment``: the result is written on the input's pixels with its GCPs, so QGIS draws it
exactly where it draws the input, and the class polygons lie in the GCPs' CRS over it; WARP gives a
north-up grid instead (real engine worker, tiny random weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_engine import random_weight_engine  # noqa: F401
from fixtures_placed import gcp_geotiff, rpc_geotiff
from osgeo import gdal
from qgis.core import QgsProject, QgsRasterLayer, QgsRectangle, QgsVectorLayer
from qt_wait import wait_for
from test_dock import dock, tiny_vocabulary  # noqa: F401
from test_processing_algorithm import run


def run_on(dock, layer, extent: QgsRectangle) -> tuple[QgsRasterLayer, QgsVectorLayer]:  # noqa: F811
    dock.layer_combo.setLayer(layer)
    tiny_vocabulary(dock)
    dock.polygons_check.setChecked(True)
    dock.extent_widget.setOutputExtentFromUser(extent, layer.crs())
    dock.gsd_spin.setValue(2.0)
    dock.run_button.click()
    wait_for(lambda: dock.run.status is not None)
    assert dock.run.status == "ok", dock.status_label.text()
    group = QgsProject.instance().layerTreeRoot().children()[0]
    layers = [node.layer() for node in group.findLayers()]
    classes = next(lyr for lyr in layers if isinstance(lyr, QgsRasterLayer))
    polygons = next(lyr for lyr in layers if isinstance(lyr, QgsVectorLayer))
    return classes, polygons


def test_a_gcp_layer_is_segmented_in_place(
    dock,  # noqa: F811
    random_weight_engine,  # noqa: F811
    tmp_path,
):
    path = gcp_geotiff(tmp_path / "scan.tif", 90, 70)
    layer = QgsRasterLayer(str(path), "scan", "gdal")
    assert layer.isValid() and layer.crs().authid() == "EPSG:25832"  # QGIS draws it through its GCPs
    QgsProject.instance().addMapLayer(layer)
    classes, polygons = run_on(dock, layer, layer.extent())
    # Written on the scan's own pixels with its GCPs: QGIS places it exactly where it places the scan.
    written = gdal.Open(classes.source())
    assert (written.RasterXSize, written.RasterYSize) == (90, 70)
    source_gcps = [(g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY) for g in gdal.Open(str(path)).GetGCPs()]
    assert [(g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY) for g in written.GetGCPs()] == source_gcps
    assert classes.crs() == layer.crs()
    assert classes.extent().toRectF().getCoords() == pytest.approx(layer.extent().toRectF().getCoords())
    # Polygons in the map's CRS over the classes, not in pixel units near the origin.
    assert polygons.crs() == layer.crs() and polygons.featureCount() > 0
    assert classes.extent().buffered(2.0).contains(polygons.extent())
    assert polygons.extent().width() > 0.8 * classes.extent().width()


def test_an_rpc_layer_is_segmented_in_place(
    dock,  # noqa: F811
    random_weight_engine,  # noqa: F811
    tmp_path,
):
    path = rpc_geotiff(tmp_path / "scene.tif", 80, 60)
    layer = QgsRasterLayer(str(path), "scene", "gdal")
    assert layer.isValid() and layer.crs().authid() == "EPSG:4326"  # QGIS draws it through its RPCs
    QgsProject.instance().addMapLayer(layer)
    classes, polygons = run_on(dock, layer, layer.extent())
    written = gdal.Open(classes.source())
    assert (written.RasterXSize, written.RasterYSize) == (80, 60)
    assert written.GetMetadata("RPC")["LINE_OFF"] == gdal.Open(str(path)).GetMetadata("RPC")["LINE_OFF"]
    assert classes.crs() == layer.crs()
    assert classes.extent().toRectF().getCoords() == pytest.approx(layer.extent().toRectF().getCoords())
    assert polygons.crs() == layer.crs() and polygons.featureCount() > 0
    assert classes.extent().buffered(2 * layer.rasterUnitsPerPixelX()).contains(polygons.extent())


def test_an_extent_inside_a_gcp_layer_is_cut_through_its_gcps(
    dock,  # noqa: F811
    random_weight_engine,  # noqa: F811
    tmp_path,
):
    path = gcp_geotiff(tmp_path / "scan.tif", 90, 70)
    layer = QgsRasterLayer(str(path), "scan", "gdal")
    QgsProject.instance().addMapLayer(layer)
    full = layer.extent()
    wanted = QgsRectangle(
        full.xMinimum() + 25, full.yMinimum() + 20, full.xMinimum() + 55, full.yMinimum() + 45
    )
    classes, _polygons = run_on(dock, layer, wanted)
    written = gdal.Open(classes.source())
    assert written.GetGCPCount() == 16 and written.RasterXSize < 90 and written.RasterYSize < 70
    # The window holds the whole extent; drawn through its GCPs it sits where the scan's pixels are.
    assert classes.extent().buffered(1e-6).contains(wanted)
    assert classes.crs() == layer.crs()
    transformer = gdal.Transformer(gdal.Open(str(path)), None, [])
    cut = gdal.Transformer(written, None, [])
    window = [
        (g.GCPPixel - w.GCPPixel, g.GCPLine - w.GCPLine)
        for g, w in zip(gdal.Open(str(path)).GetGCPs(), written.GetGCPs())
    ]
    xoff, yoff = window[0]
    assert all(offset == (xoff, yoff) for offset in window) and xoff > 0 and yoff > 0
    for pixel in ((0, 0), (5.5, 7.5), (written.RasterXSize, written.RasterYSize)):
        ok, here = cut.TransformPoint(0, *pixel)
        ok_source, there = transformer.TransformPoint(0, pixel[0] + xoff, pixel[1] + yoff)
        assert ok and ok_source and here[:2] == pytest.approx(there[:2], abs=1e-6)


def test_processing_warp_writes_a_north_up_grid_in_the_gcps_crs(
    provider,
    random_weight_engine,  # noqa: F811
    tmp_path,
):
    path = gcp_geotiff(tmp_path / "scan.tif", 90, 70)
    out = tmp_path / "classes.tif"
    result = run({"INPUT": str(path), "OUTPUT": str(out), "RESOLUTION": 2.0, "WARP": True})
    written = gdal.Open(result["OUTPUT"])
    gt = written.GetGeoTransform()
    assert written.GetGCPCount() == 0 and (gt[2], gt[4]) == (0.0, 0.0) and gt[1] == pytest.approx(-gt[5])
    layer = QgsRasterLayer(str(path), "scan", "gdal")  # QGIS's own warped view of the scan
    classes = QgsRasterLayer(str(out), "classes", "gdal")
    assert classes.crs() == layer.crs()
    assert classes.extent().toRectF().getCoords() == pytest.approx(
        layer.extent().toRectF().getCoords(), abs=gt[1]
    )
    assert json.loads(Path(result["SIDECAR"]).read_text())["output"]["geometry"] == "warped from gcps"
