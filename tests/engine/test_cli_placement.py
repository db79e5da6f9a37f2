"""``python -m engine segment`` on rasters placed by GCPs or RPCs (tiny random-weight SegEarth-OV):
outputs keep the input's GCPs/RPCs, or with ``--warp`` lie on a north-up grid that GDAL's transformer of
the input agrees with; ``--bbox`` and ``--gsd`` go through the same transformer; the sidecar says which."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, osr
from placed_rasters import gcp_raster, plain_image, rpc_raster, to_ground, transformer_of
from test_cli_segment import CLASSES, TINY, listing, segment

from engine.raster import grid as grids

gdal.UseExceptions()
NORTH_UP = (400000.0, 0.5, 0.0, 5600000.0, 0.0, -0.5)
PIXELS = [(0, 0), (13.5, 7.25), (40, 30), (59, 49)]


def sidecar(out) -> dict:
    return json.loads(Path(out).with_suffix(".json").read_text())


def gcps_of(path) -> list:
    return [(g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY) for g in gdal.Open(str(path)).GetGCPs()]


def same_crs(wkt_a: str, wkt_b: str) -> bool:
    return bool(osr.SpatialReference(wkt_a).IsSame(osr.SpatialReference(wkt_b)))


def footprint(path, width: int, height: int, steps: int = 40) -> np.ndarray:
    """Ground points along the raster's edges through GDAL's own transformer of the file."""
    edge = [(width * i / steps, 0) for i in range(steps + 1)] + [
        (width * i / steps, height) for i in range(steps + 1)
    ]
    edge += [(0, height * i / steps) for i in range(steps + 1)] + [
        (width, height * i / steps) for i in range(steps + 1)
    ]
    return to_ground(path, edge)


def assert_north_up_over(out, ground: np.ndarray) -> tuple:
    """The output's grid is north-up and its extent is the bounding box of ``ground`` (within a pixel)."""
    dataset = gdal.Open(str(out))
    gt = dataset.GetGeoTransform()
    assert (gt[2], gt[4]) == (0.0, 0.0) and gt[1] > 0 > gt[5]
    extent = (gt[0], gt[3] + gt[5] * dataset.RasterYSize, gt[0] + gt[1] * dataset.RasterXSize, gt[3])
    expected = (ground[:, 0].min(), ground[:, 1].min(), ground[:, 0].max(), ground[:, 1].max())
    assert extent == pytest.approx(expected, abs=gt[1])
    return gt, dataset


def assert_classes_only_inside(out, source, width: int, height: int, to_source_crs=None) -> None:
    """Output pixels whose centre falls (by GDAL's inverse transformer of the input) inside the input
    carry a class, those well outside are 0 (random weights classify every valid pixel)."""
    dataset = gdal.Open(str(out))
    gt, labels = dataset.GetGeoTransform(), dataset.ReadAsArray()
    rows, cols = np.mgrid[0 : labels.shape[0], 0 : labels.shape[1]]
    x = gt[0] + (cols.ravel() + 0.5) * gt[1]
    y = gt[3] + (rows.ravel() + 0.5) * gt[5]
    points = (
        list(zip(x, y))
        if to_source_crs is None
        else [to_source_crs.TransformPoint(*p)[:2] for p in zip(x, y)]
    )
    transformer, _keep = transformer_of(source)
    mapped, ok = transformer.TransformPoints(1, points)
    assert all(ok)
    pixel = np.array([m[:2] for m in mapped]).reshape(*labels.shape, 2)
    margin = np.minimum.reduce([pixel[..., 0], width - pixel[..., 0], pixel[..., 1], height - pixel[..., 1]])
    assert (labels[margin > 1.5] > 0).all()
    assert (labels[margin < -1.5] == 0).all()
    assert (margin > 1.5).mean() > 0.5 and (margin < -1.5).any()


@pytest.mark.parametrize("fmt", ["GTiff", "VRT"])
def test_a_gcp_raster_keeps_its_gcps(tmp_path, fmt, capsys):
    source = gcp_raster(tmp_path / f"in.{fmt.lower()}", 60, 50, fmt=fmt)
    out, confidence = tmp_path / "out.tif", tmp_path / "conf.tif"
    assert segment(source, *CLASSES, "--out", out, "--confidence", confidence, *TINY) == 0
    assert "no georeferencing" not in capsys.readouterr().err
    for result in (out, confidence):
        dataset = gdal.Open(str(result))
        assert dataset.GetGeoTransform(can_return_null=True) is None
        assert gcps_of(result) == gcps_of(source)
        assert same_crs(dataset.GetGCPProjection(), gdal.Open(source).GetGCPProjection())
        assert np.allclose(to_ground(result, PIXELS), to_ground(source, PIXELS), atol=1e-6)
    record = sidecar(out)
    assert record["output"]["geometry"] == "gcps" and record["input"]["geometry"] == "gcps"
    assert len(record["output"]["gcps"]) == 16 and record["warnings"] == []


def test_bbox_and_gsd_of_a_gcp_raster_go_through_the_transformer(tmp_path):
    source = gcp_raster(tmp_path / "in.tif", 240, 200, gt=NORTH_UP)
    wkt = gdal.Open(source).GetGCPProjection()
    to_geo = osr.CoordinateTransformation(grids.spatial_reference(wkt), grids.spatial_reference("EPSG:4326"))
    lon0, lat0, _ = to_geo.TransformPoint(400020.0, 5599930.0)
    lon1, lat1, _ = to_geo.TransformPoint(400075.0, 5599975.0)
    bbox = f"{lon0},{lat0},{lon1},{lat1}"
    out = tmp_path / "out.tif"
    assert (
        segment(
            source, *CLASSES, "--out", out, *TINY, "--bbox", bbox, "--bbox-crs", "EPSG:4326", "--gsd", 1.5
        )
        == 0
    )
    # The GCPs were sampled from NORTH_UP: the window must be the one that grid gives for the same box.
    window, _ = grids.window_from_bbox(NORTH_UP, wkt, (240, 200), bbox, "EPSG:4326")
    dataset = gdal.Open(str(out))
    assert (dataset.RasterXSize, dataset.RasterYSize) == (window.width, window.height)
    shifted = [(x + window.xoff, y + window.yoff) for x, y in PIXELS]
    assert np.allclose(to_ground(out, PIXELS), to_ground(source, shifted), atol=1e-6)
    record = sidecar(out)
    assert record["output"]["window"] == {
        "xoff": window.xoff,
        "yoff": window.yoff,
        "width": window.width,
        "height": window.height,
    }
    assert record["settings"]["native_gsd_m"] == pytest.approx([0.5, 0.5], rel=1e-6)
    assert record["settings"]["working_size"] == [round(window.width / 3), round(window.height / 3)]


def test_warp_resamples_a_gcp_raster_to_a_north_up_grid_in_the_gcps_crs(tmp_path):
    source = gcp_raster(tmp_path / "in.tif", 60, 50, bend=4.0)
    out, confidence = tmp_path / "out.tif", tmp_path / "conf.tif"
    assert (
        segment(source, *CLASSES, "--out", out, "--confidence", confidence, *TINY, "--warp", "--gsd", 2.0)
        == 0
    )
    gt, dataset = assert_north_up_over(out, footprint(source, 60, 50))
    assert dataset.GetGCPCount() == 0
    assert same_crs(dataset.GetProjection(), gdal.Open(source).GetGCPProjection())
    assert gdal.Open(str(confidence)).GetGeoTransform() == gt
    assert_classes_only_inside(out, source, 60, 50)
    record = sidecar(out)
    assert record["output"]["geometry"] == "warped from gcps" and record["input"]["geometry"] == "gcps"
    assert record["settings"]["warp"] is True
    # The sidecar's input is the file as it is, not its warped view.
    assert (record["input"]["driver"], record["input"]["width"], record["input"]["band_count"]) == (
        "GTiff",
        60,
        3,
    )
    width, height = dataset.RasterXSize, dataset.RasterYSize
    assert record["settings"]["working_size"] == [round(width * gt[1] / 2.0), round(height * gt[1] / 2.0)]


def test_an_rpc_raster_keeps_its_rpcs_and_a_lon_lat_bbox_cuts_them(tmp_path):
    source = rpc_raster(tmp_path / "in.tif", 80, 60)
    out = tmp_path / "out.tif"
    assert segment(source, *CLASSES, "--out", out, *TINY) == 0
    rpc_in = gdal.Open(source).GetMetadata("RPC")
    rpc_out = gdal.Open(str(out)).GetMetadata("RPC")
    assert {k: float(v.split()[0]) for k, v in rpc_out.items() if "COEFF" not in k} == {
        k: float(v.split()[0]) for k, v in rpc_in.items() if "COEFF" not in k
    }
    assert np.allclose(to_ground(out, PIXELS), to_ground(source, PIXELS), rtol=0, atol=1e-9)
    assert sidecar(out)["output"]["geometry"] == "rpc"
    # A bbox in lon/lat (the RPCs' own frame): the window holds it whole, the RPC offsets move with it.
    lon, lat = to_ground(source, [(20, 15), (50, 40)]).T
    bbox = (lon.min(), lat.min(), lon.max(), lat.max())
    cut = tmp_path / "cut.tif"
    assert segment(source, *CLASSES, "--out", cut, *TINY, "--bbox", ",".join(map(str, bbox))) == 0
    window = sidecar(cut)["output"]["window"]
    transformer, _keep = transformer_of(source)
    corners, ok = transformer.TransformPoints(1, [(x, y) for x in bbox[::2] for y in bbox[1::2]])
    cols, rows = [c[0] for c in corners], [c[1] for c in corners]
    assert all(ok)
    # Whole pixels around it (a corner within 1e-6 px of a pixel edge counts as on it).
    assert window["xoff"] == np.floor(min(cols) + 1e-6) and window["xoff"] + window["width"] == np.ceil(
        max(cols) - 1e-6
    )
    assert window["yoff"] == np.floor(min(rows) + 1e-6) and window["yoff"] + window["height"] == np.ceil(
        max(rows) - 1e-6
    )
    rpc_cut = gdal.Open(str(cut)).GetMetadata("RPC")
    assert float(rpc_cut["SAMP_OFF"]) == pytest.approx(float(rpc_in["SAMP_OFF"]) - window["xoff"])
    assert float(rpc_cut["LINE_OFF"]) == pytest.approx(float(rpc_in["LINE_OFF"]) - window["yoff"])
    shifted = [(x + window["xoff"], y + window["yoff"]) for x, y in PIXELS]
    assert np.allclose(to_ground(cut, PIXELS), to_ground(source, shifted), rtol=0, atol=1e-9)


def test_warp_puts_an_rpc_raster_on_the_utm_zone_of_the_scene(tmp_path):
    source = rpc_raster(tmp_path / "in.tif", 80, 60, lon=-3.2, lat=-20.0)  # UTM zone 30 south
    out = tmp_path / "out.tif"
    assert segment(source, *CLASSES, "--out", out, *TINY, "--warp") == 0
    utm = osr.SpatialReference()
    utm.ImportFromEPSG(32730)
    utm.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    wgs84 = grids.spatial_reference("EPSG:4326")
    to_utm = osr.CoordinateTransformation(wgs84, utm)
    ground = np.array([to_utm.TransformPoint(x, y)[:2] for x, y in footprint(source, 80, 60)])
    _gt, dataset = assert_north_up_over(out, ground)
    assert same_crs(dataset.GetProjection(), utm.ExportToWkt())
    assert_classes_only_inside(out, source, 80, 60, osr.CoordinateTransformation(utm, wgs84))
    assert sidecar(out)["output"]["geometry"] == "warped from rpc"


def test_warp_without_georeferencing_is_refused(tmp_path, capsys):
    plain = plain_image(tmp_path / "plain.tif", 30, 20)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert segment(plain, *CLASSES, "--out", out_dir / "o.tif", *TINY, "--warp") == 2
    err = capsys.readouterr().err
    assert "--warp needs georeferencing" in err and "Traceback" not in err
    assert listing(out_dir) == []
