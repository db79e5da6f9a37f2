"""Placement by GCPs and RPCs: which one a file has, windows and pixel sizes through GDAL's transformer,
shifted placements of windows, and the warped north-up grid (real GDAL files, no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from osgeo import gdal, osr
from placed_rasters import ROTATED_UTM, gcp_raster, plain_image, rpc_raster, to_ground, utm32_wkt
from raster_files import random_raster

from engine.errors import UserError
from engine.raster import geometry
from engine.raster import grid as grids
from engine.raster.reader import RasterSource

gdal.UseExceptions()
# A north-up 0.5 m grid: GCPs sampled from it must give the same windows as the geotransform itself.
NORTH_UP = (400000.0, 0.5, 0.0, 5600000.0, 0.0, -0.5)


def test_the_placement_follows_gdal_order(tmp_path):
    georeferenced = random_raster(tmp_path / "geo.tif", 20, 10)
    gcps = gcp_raster(tmp_path / "gcp.tif", 20, 10)
    rpc = rpc_raster(tmp_path / "rpc.tif", 20, 10)
    plain = plain_image(tmp_path / "plain.tif", 20, 10)
    kinds = {}
    for path in (georeferenced, gcps, rpc, plain):
        with RasterSource(path) as source:
            kinds[path] = (source.geometry.kind, source.georeferenced, source.info().geometry)
    assert kinds[georeferenced] == ("geotransform", True, "geotransform")
    assert kinds[gcps] == ("gcps", True, "gcps")
    assert kinds[rpc] == ("rpc", True, "rpc")
    assert kinds[plain] == ("none", False, "none")
    with RasterSource(gcps) as source:
        assert len(source.geometry.gcps) == 16
        assert osr.SpatialReference(source.geometry.crs_wkt).GetAuthorityCode(None) == "32632"
    with RasterSource(rpc) as source:
        assert osr.SpatialReference(source.geometry.crs_wkt).GetAuthorityCode(None) == "4326"


def test_a_gcp_bbox_window_equals_the_window_of_the_grid_the_gcps_were_sampled_from(tmp_path):
    path = gcp_raster(tmp_path / "gcp.tif", 400, 300, gt=NORTH_UP)
    with RasterSource(path) as source:
        placement = source.geometry
    wkt = utm32_wkt()
    to_geo = osr.CoordinateTransformation(grids.spatial_reference(wkt), grids.spatial_reference("EPSG:4326"))
    lon0, lat0, _ = to_geo.TransformPoint(400020.0, 5599900.0)
    lon1, lat1, _ = to_geo.TransformPoint(400090.3, 5599950.0)
    for bbox, crs in (("400010.2,5599880,400060,5599990.1", None), ((lon0, lat0, lon1, lat1), "EPSG:4326")):
        expected = grids.window_from_bbox(NORTH_UP, wkt, (400, 300), bbox, crs)
        assert grids.window_from_bbox_by_transformer(placement, (400, 300), bbox, crs) == expected
    assert expected[1] is False
    # A box past the raster's footprint is cut and says so; one outside it is refused.
    window, cut = grids.window_from_bbox_by_transformer(
        placement, (400, 300), "399990,5599900,400050,5600010", None
    )
    assert cut and window == grids.PixelWindow(0, 0, 100, 200)
    with pytest.raises(UserError, match="does not overlap"):
        grids.window_from_bbox_by_transformer(placement, (400, 300), "0,0,10,10", None)


def test_a_box_drawn_around_a_rotated_scene_is_not_reported_as_cut(tmp_path):
    path = gcp_raster(tmp_path / "gcp.tif", 120, 100)
    with RasterSource(path) as source:
        placement = source.geometry
    bounds = geometry.footprint_bounds(placement, 120, 100)
    window, cut = grids.window_from_bbox_by_transformer(placement, (120, 100), bounds, None)
    assert window == grids.PixelWindow(0, 0, 120, 100) and not cut


def _metres_in_utm(lonlat_a, lonlat_b) -> float:
    """Distance of two lon/lat points measured in UTM 32N (independent of the engine's degree factors)."""
    to_utm = osr.CoordinateTransformation(
        grids.spatial_reference("EPSG:4326"), grids.spatial_reference("EPSG:32632")
    )
    (xa, ya, _), (xb, yb, _) = to_utm.TransformPoint(*lonlat_a), to_utm.TransformPoint(*lonlat_b)
    return math.hypot(xb - xa, yb - ya)


def test_pixel_sizes_are_measured_through_the_transformer(tmp_path):
    gcps = gcp_raster(tmp_path / "gcp.tif", 120, 100)
    with RasterSource(gcps) as source:
        assert geometry.transformer_pixel_size(source.geometry, 120, 100) == pytest.approx(
            (math.hypot(ROTATED_UTM[1], ROTATED_UTM[4]), math.hypot(ROTATED_UTM[2], ROTATED_UTM[5])), rel=1e-6
        )
    rpc = rpc_raster(tmp_path / "rpc.tif", 200, 160)
    with RasterSource(rpc) as source:
        measured = geometry.transformer_pixel_size(source.geometry, 200, 160)
    row = to_ground(rpc, [(0, 80), (200, 80)])
    column = to_ground(rpc, [(100, 0), (100, 160)])
    expected = (_metres_in_utm(*row) / 200, _metres_in_utm(*column) / 160)
    assert measured == pytest.approx(expected, rel=2e-3)


@pytest.mark.parametrize("kind", ["gcps", "rpc"])
def test_a_shifted_placement_puts_window_pixels_where_the_source_puts_them(tmp_path, kind):
    path = (gcp_raster if kind == "gcps" else rpc_raster)(tmp_path / "in.tif", 120, 100)
    with RasterSource(path) as source:
        placement = source.geometry
    shifted = placement.shifted(17, 31)
    pixels = [(0, 0), (10.5, 3.25), (60, 40), (103, 69)]
    moved = shifted.transformer(103, 69).to_ground(pixels)
    original = placement.transformer(120, 100).to_ground([(x + 17, y + 31) for x, y in pixels])
    assert np.allclose(moved, original, rtol=0, atol=1e-6 if kind == "gcps" else 1e-10)


@pytest.mark.parametrize("kind", ["gcps", "rpc"])
def test_the_warped_grid_is_north_up_and_covers_the_footprint(tmp_path, kind):
    path = (gcp_raster if kind == "gcps" else rpc_raster)(tmp_path / "in.tif", 120, 100)
    with RasterSource(path, warp=True) as source:
        gt, wkt = source.geotransform, source.projection_wkt
        assert source.geometry.label == f"warped from {kind}"
        assert (gt[2], gt[4]) == (0.0, 0.0) and gt[1] == pytest.approx(-gt[5])
        size = (source.width, source.height)
        _data, valid = source.read(0, 0, *size)
        assert not valid.all() and valid.mean() > 0.5  # the alpha band marks pixels outside the scene
    assert osr.SpatialReference(wkt).GetAuthorityCode(None) == "32632"  # RPCs: lon 7° is UTM zone 32
    corners = to_ground(path, [(0, 0), (120, 0), (0, 100), (120, 100)])
    if kind == "rpc":
        to_utm = osr.CoordinateTransformation(
            grids.spatial_reference("EPSG:4326"), grids.spatial_reference(wkt)
        )
        corners = np.array([to_utm.TransformPoint(x, y)[:2] for x, y in corners])
    extent = (gt[0], gt[3] + gt[5] * size[1], gt[0] + gt[1] * size[0], gt[3])
    pixel = gt[1]
    assert corners[:, 0].min() == pytest.approx(extent[0], abs=pixel)
    assert corners[:, 1].min() == pytest.approx(extent[1], abs=pixel)
    assert corners[:, 0].max() == pytest.approx(extent[2], abs=pixel)
    assert corners[:, 1].max() == pytest.approx(extent[3], abs=pixel)


def test_warp_refusals(tmp_path):
    plain = plain_image(tmp_path / "plain.tif", 20, 10)
    with pytest.raises(UserError, match="--warp needs georeferencing"):
        RasterSource(plain, warp=True)
    no_crs = tmp_path / "no_crs.tif"
    gdal.Translate(
        str(no_crs), plain, GCPs=[gdal.GCP(10.0 * i, 5.0 * j, 0, i, j) for i, j in ((0, 0), (20, 0), (0, 10))]
    )
    with pytest.raises(UserError, match="GCPs without a CRS"):
        RasterSource(str(no_crs), warp=True)
    # A north-up raster needs no warp: it is read as it is.
    with RasterSource(random_raster(tmp_path / "geo.tif", 20, 10), warp=True) as source:
        assert source.geometry.label == "geotransform" and (source.width, source.height) == (20, 10)


def test_rotated_truth_is_reproduced_by_the_gcp_polynomial(tmp_path):
    """The fixture's GCPs are exactly affine: GDAL's fit must give back the rotated grid they came from."""
    path = gcp_raster(tmp_path / "gcp.tif", 120, 100)
    pixels = [(0, 0), (37.5, 12.25), (120, 100)]
    expected = [
        (
            ROTATED_UTM[0] + p * ROTATED_UTM[1] + q * ROTATED_UTM[2],
            ROTATED_UTM[3] + p * ROTATED_UTM[4] + q * ROTATED_UTM[5],
        )
        for p, q in pixels
    ]
    assert np.allclose(to_ground(path, pixels), expected, atol=1e-6)


def test_grids_name_their_placement_for_the_sidecar(tmp_path):
    plain = plain_image(tmp_path / "plain.tif", 20, 10)
    rotated = tmp_path / "rotated.tif"
    gdal.Translate(str(rotated), plain, outputSRS="EPSG:32632")
    dataset = gdal.Open(str(rotated), gdal.GA_Update)
    dataset.SetGeoTransform(ROTATED_UTM)
    dataset = None
    labels = {}
    for name, path, warp in (
        ("plain", plain, False),
        ("rotated", str(rotated), False),
        ("rotated warped", str(rotated), True),
        ("gcps", gcp_raster(tmp_path / "gcp.tif", 20, 10), False),
    ):
        with RasterSource(path, warp=warp) as source:
            grid, _ = grids.requested_grid(source.geometry, (source.width, source.height), None, None)
            labels[name] = grid.geometry_label
    assert labels == {
        "plain": "none",
        "rotated": "geotransform",
        "rotated warped": "warped from geotransform",
        "gcps": "gcps",
    }
