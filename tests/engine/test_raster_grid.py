"""Output and working grids: bbox windows (any CRS), native GSD, the default 1000/448 working scale."""

from __future__ import annotations

import pytest
from osgeo import osr

from engine.errors import UserError
from engine.raster import grid as grids

GT = (346000.0, 0.5, 0.0, 5648000.0, 0.0, -0.5)


def utm_wkt(epsg=25832):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def test_bbox_in_raster_crs_snaps_outward():
    window, clipped = grids.window_from_bbox(
        GT, utm_wkt(), (1000, 1000), "346010.2,5647900,346020,5647990.1", None
    )
    assert window == grids.PixelWindow(20, 19, 20, 181) and not clipped


def test_bbox_in_another_crs_covers_the_reprojected_box():
    wkt = utm_wkt()
    to_geo = osr.CoordinateTransformation(grids.spatial_reference(wkt), grids.spatial_reference("EPSG:4326"))
    lon0, lat0, _ = to_geo.TransformPoint(346100.0, 5647800.0)
    lon1, lat1, _ = to_geo.TransformPoint(346200.0, 5647900.0)
    window, _ = grids.window_from_bbox(GT, wkt, (1000, 1000), (lon0, lat0, lon1, lat1), "EPSG:4326")
    # the lon/lat box of a 100 m square is a little larger than the square in UTM
    assert 195 <= window.width <= 215 and 195 <= window.height <= 215
    assert abs(window.xoff - 200) <= 8 and abs(window.yoff - 200) <= 8


def test_bbox_errors_and_clipping():
    with pytest.raises(UserError, match="does not overlap"):
        grids.window_from_bbox(GT, utm_wkt(), (1000, 1000), "0,0,10,10", None)
    with pytest.raises(UserError, match="unknown CRS"):
        grids.window_from_bbox(GT, utm_wkt(), (1000, 1000), "0,0,10,10", "EPSG:999999")
    with pytest.raises(UserError, match="four numbers"):
        grids.window_from_bbox(GT, utm_wkt(), (1000, 1000), "1,2,3", None)
    with pytest.raises(UserError, match="minx must be < maxx"):
        grids.window_from_bbox(GT, utm_wkt(), (1000, 1000), "5,2,3,4", None)
    window, clipped = grids.window_from_bbox(
        GT, utm_wkt(), (1000, 1000), "345990,5647990,346010,5648010", None
    )
    assert clipped and window == grids.PixelWindow(0, 0, 20, 20)


def test_output_grid_shift_and_default_working_grid():
    grid = grids.output_grid(
        GT, utm_wkt(), True, (1000, 1000), grids.PixelWindow(100, 50, 1000 - 100, 1000 - 50)
    )
    assert grid.geotransform == (346050.0, 0.5, 0.0, 5647975.0, 0.0, -0.5)
    assert grid.native_gsd == (0.5, 0.5)
    full = grids.output_grid(GT, utm_wkt(), True, (1000, 1000), grids.PixelWindow(0, 0, 1000, 1000))
    working = grids.working_grid(full)
    assert (working.width, working.height) == (448, 448)  # SegEarth-OV's 1000² → 448²
    assert working.gsd == pytest.approx(0.5 * 1000 / 448)
    assert working.scale_x == 1000 / 448
    assert grids.working_grid(full, 2.0).width == 250


def test_gsd_limits():
    grid = grids.output_grid(GT, utm_wkt(), True, (1000, 1000), grids.PixelWindow(0, 0, 1000, 1000))
    grids.working_grid(grid, 0.5 / 8)
    grids.working_grid(grid, 0.5 * 64)
    for bad in (0.5 / 8.5, 0.5 * 65, 0.0, -1.0, float("nan")):
        with pytest.raises(UserError):
            grids.working_grid(grid, bad)


def test_geographic_native_gsd_in_metres():
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    gt = (7.0, 1e-5, 0.0, 51.0, 0.0, -1e-5)
    gx, gy = grids.native_gsd(gt, srs.ExportToWkt(), 100, 100)
    assert gx == pytest.approx(111_320 * 1e-5 * 0.6293, rel=1e-3)  # cos(51°)
    assert gy == pytest.approx(1.1057, rel=1e-3)
