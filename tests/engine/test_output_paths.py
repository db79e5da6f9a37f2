"""engine.raster.output_paths: which files a dataset consists of, and which outputs are refused."""

from __future__ import annotations

import os

import pytest
from osgeo import gdal, ogr, osr
from raster_files import random_raster

from engine.errors import UserError
from engine.raster import output_paths
from engine.raster.output_paths import dataset_files, ensure_outputs_safe

gdal.UseExceptions()


def _shapefile(path) -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    source = ogr.GetDriverByName("ESRI Shapefile").CreateDataSource(str(path))
    layer = source.CreateLayer("parcels", srs, ogr.wkbPoint)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt("POINT (1 2)"))
    layer.CreateFeature(feature)
    source = None
    return str(path)


def test_shapefile_siblings_are_its_files(tmp_path):
    shp = _shapefile(tmp_path / "parcels.shp")
    files = {os.path.basename(f) for f in dataset_files(shp)}
    assert {"parcels.shp", "parcels.shx", "parcels.dbf", "parcels.prj"} <= files
    with pytest.raises(UserError, match=r"--polygons .*parcels\.dbf would write over .*parcels\.dbf, a file"):
        ensure_outputs_safe([shp], {"--polygons": str(tmp_path / "parcels.dbf")})


def test_vrt_sources_recursively_and_missing_ones(tmp_path):
    a = random_raster(tmp_path / "a.tif", 8, 8)
    b = random_raster(tmp_path / "b.tif", 8, 8)
    gdal.BuildVRT(str(tmp_path / "inner.vrt"), [a])
    gdal.BuildVRT(str(tmp_path / "outer.vrt"), [str(tmp_path / "inner.vrt"), b])
    os.remove(b)  # GDAL no longer lists a missing source; the VRT's XML still names it
    files = dataset_files(str(tmp_path / "outer.vrt"))
    assert files[0] == str(tmp_path / "outer.vrt")
    assert set(files) == {str(tmp_path / n) for n in ("outer.vrt", "inner.vrt", "a.tif", "b.tif")}
    # the missing source cannot be written over either: the VRT would read the class raster as imagery
    with pytest.raises(UserError, match=r"b\.tif, a file of the input"):
        ensure_outputs_safe([str(tmp_path / "outer.vrt")], {"--out": str(tmp_path / "b.tif")})


def test_aux_xml_side_file_counts(tmp_path):
    raster = random_raster(tmp_path / "x.tif", 8, 8)
    gdal.Info(raster, stats=True)
    assert str(tmp_path / "x.tif.aux.xml") in dataset_files(raster)
    # an output whose own side file would replace the input's: y.tif's .aux.xml is not x's, so allowed
    ensure_outputs_safe([raster], {"--out": str(tmp_path / "y.tif")})


def test_output_whose_side_file_is_an_input(tmp_path):
    named_like_a_side_file = random_raster(tmp_path / "out.tif.aux.xml", 8, 8)
    with pytest.raises(
        UserError, match=r"--out .*out\.tif would write its side file out\.tif\.aux\.xml over"
    ):
        ensure_outputs_safe([named_like_a_side_file], {"--out": str(tmp_path / "out.tif")})


def test_paths_gdal_cannot_open_are_their_own_file(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a dataset")
    assert dataset_files(str(notes)) == [str(notes)]
    assert dataset_files(str(tmp_path / "absent.tif")) == [str(tmp_path / "absent.tif")]


def test_outputs_compared_by_identity_and_spelling(tmp_path):
    raster = random_raster(tmp_path / "in.tif", 8, 8)
    (tmp_path / "sub").mkdir()
    (tmp_path / "here").symlink_to(tmp_path, target_is_directory=True)
    ensure_outputs_safe([raster], {"--out": str(tmp_path / "o.tif"), "--confidence": None, "sidecar": ""})
    for other in (tmp_path / "sub" / ".." / "o.tif", tmp_path / "here" / "o.tif"):
        with pytest.raises(UserError, match="--out and --confidence are the same file"):
            ensure_outputs_safe([raster], {"--out": str(tmp_path / "o.tif"), "--confidence": str(other)})


def test_case_insensitive_file_systems_are_detected_not_assumed(tmp_path, monkeypatch):
    raster = random_raster(tmp_path / "in.tif", 8, 8)
    outputs = {"--out": str(tmp_path / "Result.tif"), "--confidence": str(tmp_path / "result.tif")}
    output_paths._ignores_case.cache_clear()
    assert output_paths._ignores_case(str(tmp_path)) is False  # this file system keeps case apart
    ensure_outputs_safe([raster], outputs)
    # where the probe finds the upper-case name (macOS, Windows), the two names are one file
    monkeypatch.setattr(output_paths, "_ignores_case", lambda folder: True)
    with pytest.raises(UserError, match="same file"):
        ensure_outputs_safe([raster], outputs)
    assert not [p for p in tmp_path.iterdir() if "probe" in p.name]
