"""Outputs that display at any zoom: internal overviews (GeoTIFF) or a COG, colour table and names kept."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal
from raster_files import random_raster

from engine.cli import main
from engine.raster.finish import overview_levels

gdal.UseExceptions()
TINY = ["--clip", "RSOVSeg-Tiny-ViT-16", "--upsampler", "none", "--random-weights", "--quiet"]
CLASSES = ["--class", "building,roof", "--class", "road", "--class", "water"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scale_outputs")
    raster = random_raster(folder / "in.tif", 600, 520)
    made = {}
    for fmt in ("gtiff", "cog"):
        out, conf = folder / f"{fmt}.tif", folder / f"{fmt}_conf.tif"
        argv = ["segment", raster, *CLASSES, "--out", out, "--confidence", conf, "--gsd", "4", *TINY]
        assert main([*map(str, argv), "--format", fmt]) == 0
        made[fmt] = (out, conf)
    return made


def _open(path):
    dataset = gdal.Open(str(path))
    dataset.GetMetadata()  # loads the .aux.xml (category names)
    return dataset


def test_overview_levels_reach_one_block():
    assert overview_levels(256, 100) == []
    assert overview_levels(600, 520) == [2, 4]
    assert overview_levels(200_000, 150_000) == [2**k for k in range(1, 11)]


@pytest.mark.parametrize("fmt", ["gtiff", "cog"])
def test_outputs_have_overviews_colours_and_names(outputs, fmt):
    out, conf = outputs[fmt]
    classes = _open(out)
    band = classes.GetRasterBand(1)
    assert band.GetOverviewCount() == 2
    assert band.GetColorTable().GetCount() >= 4
    assert band.GetCategoryNames()[:4] == ["unclassified", "building", "road", "water"]
    layout = classes.GetMetadata("IMAGE_STRUCTURE").get("LAYOUT")
    assert (layout == "COG") == (fmt == "cog")
    # NEAREST: the first overview picks pixels of the full raster, never averages of class values.
    full = band.ReadAsArray()
    overview = band.GetOverview(0).ReadAsArray()
    assert overview.shape == (260, 300)
    assert set(np.unique(overview)) <= set(np.unique(full))
    confidence_dataset = _open(conf)  # held: a band must not outlive its dataset
    confidence = confidence_dataset.GetRasterBand(1)
    assert confidence.GetOverviewCount() == 2 and confidence.GetNoDataValue() == -1.0
    values = confidence.ReadAsArray().astype(np.float64)
    # AVERAGE over 2 x 2 blocks, nodata skipped: a plain loop over the blocks.
    expected = np.empty((260, 300))
    for y in range(260):
        for x in range(300):
            block = values[2 * y : 2 * y + 2, 2 * x : 2 * x + 2]
            block = block[block != -1.0]
            expected[y, x] = block.mean() if block.size else -1.0
    got = confidence.GetOverview(0).ReadAsArray()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    band = confidence = None


def test_cog_and_geotiff_hold_the_same_pixels(outputs):
    for a, b in zip(outputs["gtiff"], outputs["cog"]):
        first, second = gdal.Open(str(a)), gdal.Open(str(b))
        np.testing.assert_array_equal(first.ReadAsArray(), second.ReadAsArray())
        assert first.GetGeoTransform() == second.GetGeoTransform()
        assert first.GetProjection() == second.GetProjection()
