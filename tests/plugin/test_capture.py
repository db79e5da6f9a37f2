"""Capture: file-backed layers by path and window, other layers rendered to a georeferenced GeoTIFF;
extents transformed into the layer's CRS when the project's CRS differs."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_rasters import read_bands, write_geotiff
from osgeo import gdal, osr
from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer, QgsRectangle

from rs_ovseg_qgis.core.capture import (
    CaptureError,
    capture_file_layer,
    capture_rendered,
    file_source_path,
    metres_to_map_units,
    native_gsd_m,
    transform_extent,
)

UTM32 = QgsCoordinateReferenceSystem("EPSG:25832")
WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
WEB_MERCATOR = QgsCoordinateReferenceSystem("EPSG:3857")


def brute_force_bbox(extent: QgsRectangle, source_epsg: int, target_epsg: int, steps: int = 400):
    """Transform many points along the extent's edges with OSR and take min/max: the slow, obvious way."""
    source, target = osr.SpatialReference(), osr.SpatialReference()
    source.ImportFromEPSG(source_epsg)
    target.ImportFromEPSG(target_epsg)
    for srs in (source, target):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(source, target)
    t = np.linspace(0.0, 1.0, steps)
    x0, y0, x1, y1 = extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full(steps, x1), x1 - (x1 - x0) * t, np.full(steps, x0)])
    ys = np.concatenate([np.full(steps, y0), y0 + (y1 - y0) * t, np.full(steps, y1), y1 - (y1 - y0) * t])
    points = np.array([transform.TransformPoint(float(x), float(y))[:2] for x, y in zip(xs, ys)])
    return points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()


@pytest.fixture
def utm_layer(tmp_path, qgis_new_project):
    rgb = np.stack([np.full((200, 300), v, np.uint8) for v in (10, 120, 240)])
    rgb[0, :100, :150] = 200  # a distinct top-left block
    path = write_geotiff(tmp_path / "ortho.tif", rgb)  # 150 m x 100 m at 0.5 m, EPSG:25832
    layer = QgsRasterLayer(str(path), "ortho", "gdal")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def test_a_geographic_extent_is_transformed_into_the_layer_crs(utm_layer):
    project = QgsProject.instance()
    project.setCrs(WGS84)  # the project (map view) is in degrees, the layer in UTM metres
    in_degrees = transform_extent(QgsRectangle(356_020, 5_644_930, 356_110, 5_644_990), UTM32, WGS84, project)
    back = transform_extent(in_degrees, WGS84, UTM32, project)
    expected = brute_force_bbox(in_degrees, 4326, 25832)
    got = (back.xMinimum(), back.yMinimum(), back.xMaximum(), back.yMaximum())
    assert got == pytest.approx(expected, abs=0.05)  # 5 cm


def test_file_layers_travel_as_path_and_clipped_window_in_the_layer_crs(utm_layer):
    project = QgsProject.instance()
    project.setCrs(WEB_MERCATOR)
    window_3857 = transform_extent(QgsRectangle(356_050, 5_644_950, 356_400, 5_644_980), UTM32, WEB_MERCATOR)
    capture = capture_file_layer(utm_layer, window_3857, WEB_MERCATOR, 1.0, project)
    assert capture.path == file_source_path(utm_layer) and not capture.rendered
    assert capture.bbox_crs == "EPSG:25832" and capture.gsd == 1.0
    expected = brute_force_bbox(window_3857, 3857, 25832)
    # Clipped to the layer (which ends at x = 356,150) and otherwise the transformed window.
    assert capture.bbox == pytest.approx((expected[0], expected[1], 356_150.0, expected[3]), abs=0.05)
    with pytest.raises(CaptureError, match="does not overlap"):
        capture_file_layer(utm_layer, QgsRectangle(0, 0, 1, 1), UTM32, None, project)


def test_a_rendered_capture_is_georeferenced_and_shows_the_pixels(utm_layer, tmp_path):
    extent = QgsRectangle(356_000, 5_644_950, 356_100, 5_645_000)  # the top-left 100 m x 50 m
    capture = capture_rendered([utm_layer], extent, UTM32, 1.0, tmp_path / "render.tif")
    assert capture.rendered and capture.bands == [1, 2, 3] and capture.bbox is None
    dataset = gdal.Open(capture.path)
    assert (dataset.RasterXSize, dataset.RasterYSize) == (100, 50)
    assert dataset.GetGeoTransform() == pytest.approx((356_000, 1.0, 0, 5_645_000, 0, -1.0))
    assert osr.SpatialReference(wkt=dataset.GetProjection()).GetAuthorityCode(None) == "25832"
    rgba = read_bands(tmp_path / "render.tif")
    # The block (x < 75 m, y > 5,644,950) is red 200, the rest red 10; green and blue are uniform.
    assert np.abs(rgba[0, 5:45, 5:70].astype(int) - 200).max() <= 1
    assert np.abs(rgba[0, 5:45, 80:].astype(int) - 10).max() <= 1
    assert np.abs(rgba[1].astype(int) - 120).max() <= 1 and np.abs(rgba[2].astype(int) - 240).max() <= 1
    assert (rgba[3] == 255).all()


def test_resolution_conversions(utm_layer):
    assert native_gsd_m(utm_layer) == pytest.approx(0.5)
    assert metres_to_map_units(2.0, UTM32) == pytest.approx(2.0)
    # At 60° north a metre along the parallel spans twice the degrees it spans at the equator.
    assert metres_to_map_units(1.0, WGS84, 60.0) == pytest.approx(2 * metres_to_map_units(1.0, WGS84, 0.0))


def test_oversized_renders_are_refused(utm_layer, tmp_path):
    with pytest.raises(CaptureError, match="too large"):
        capture_rendered([utm_layer], QgsRectangle(0, 0, 100_000, 100_000), UTM32, 1.0, tmp_path / "big.tif")


def test_estimate_requests_carry_the_plan_options_and_the_vocabulary_when_usable():
    from rs_ovseg_qgis.core.capture import CaptureResult
    from rs_ovseg_qgis.core.estimate import estimate_args

    capture = CaptureResult("/data/in.tif", (1.0, 2.0, 3.0, 4.0), "EPSG:25832", 0.5, rendered=False)
    # Only what changes the plan or a window's speed travels (the CLIP model does; templates do not).
    options = {"batch_size": 4, "clip": "ViT-B-16", "templates": "remote-sensing"}
    args = estimate_args(capture, options, ["building,roof", "water"], method="segearth-ov", device="cpu")
    assert args == {
        "input": "/data/in.tif",
        "classes": ["building,roof", "water"],
        "bbox": [1.0, 2.0, 3.0, 4.0],
        "bbox_crs": "EPSG:25832",
        "gsd": 0.5,
        "batch_size": 4,
        "clip": "ViT-B-16",
        "method": "segearth-ov",
        "device": "cpu",
    }
    assert "classes" not in estimate_args(capture, options, None)
