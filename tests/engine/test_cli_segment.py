"""``python -m engine segment``: end to end on a tiny random SegEarth-OV, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from osgeo import gdal
from raster_files import random_raster

from engine.cli import main

gdal.UseExceptions()
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
OEM = SHARED / "oem_koeln_50.tif"
TINY = [
    "--clip",
    "RSOVSeg-Tiny-ViT-16",
    "--upsampler",
    "none",
    "--random-weights",
    "--templates",
    "remote-sensing",
]
CLASSES = ["--class", "building,roof,house", "--class", "road", "--class", "water"]


@pytest.fixture()
def raster(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    return random_raster(folder / "in.tif", 120, 100)


def listing(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def segment(*argv):
    return main(["segment", *map(str, argv), "--quiet"])


def test_end_to_end_tiny_random_model(tmp_path, raster, capsys):
    out = tmp_path / "out.tif"
    code = segment(raster, *CLASSES, "--out", out, "--confidence", tmp_path / "conf.tif", *TINY, "--gsd", 1.5)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "RANDOM WEIGHTS" in captured.err
    assert captured.out.split() == [str(out), str(tmp_path / "conf.tif"), str(tmp_path / "out.json")]
    labels = gdal.Open(str(out)).ReadAsArray()
    assert labels.shape == (100, 120) and labels.max() <= 3
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["random_weights"] is True
    assert record["method"]["method"] == "segearth-ov"
    assert record["settings"]["working_gsd_m"] == 1.5
    assert record["timings_s"]["model_load"] > 0
    assert record["method_options"]["clip"] == "RSOVSeg-Tiny-ViT-16"
    # an existing output is refused, then replaced with --overwrite
    assert segment(raster, *CLASSES, "--out", out, *TINY) != 0
    assert "already exists" in capsys.readouterr().err
    assert (
        segment(
            raster, *CLASSES, "--out", out, *TINY, "--overwrite", "--bbox", "400010,5599950,400050,5599990"
        )
        == 0
    )
    assert gdal.Open(str(out)).RasterXSize == 40


def test_random_weights_environment_variable(tmp_path, raster, monkeypatch, capsys):
    monkeypatch.setenv("RS_OVSEG_RANDOM_WEIGHTS", "1")
    tiny = [a for a in TINY if a != "--random-weights"]
    assert segment(raster, "--class", "tree", "--out", tmp_path / "o.tif", *tiny) == 0
    assert "RANDOM WEIGHTS" in capsys.readouterr().err
    assert json.loads((tmp_path / "o.json").read_text())["random_weights"] is True


def test_vocabulary_file_and_pixel_space_raster(tmp_path, capsys):
    plain = random_raster(tmp_path / "plain.tif", 50, 40, georeferenced=False)
    vocab = tmp_path / "v.json"
    vocab.write_text(json.dumps([{"name": "field", "colour": "#00ff00", "threshold": 0.3}, "road,street"]))
    out = tmp_path / "o.tif"
    assert segment(plain, "--vocabulary", vocab, "--out", out, *TINY) == 0
    assert "no georeferencing" in capsys.readouterr().err
    ds = gdal.Open(str(out))
    assert ds.GetProjection() == "" and ds.GetGeoTransform(can_return_null=True) is None
    record = json.loads((tmp_path / "o.json").read_text())
    assert record["settings"]["class_thresholds"] == [0.3, 0.1]
    assert record["queries"] == ["field", "road", "street"]


BAD_INPUTS = {
    "missing file": (lambda r, t: ["/nonexistent/x.tif", *CLASSES], "not found"),
    "unreadable file": (lambda r, t: [_text_file(t), *CLASSES], "cannot read"),
    "band does not exist": (lambda r, t: [r, *CLASSES, "--bands", "1,2,5"], "band 5 does not exist"),
    "empty vocabulary": (lambda r, t: [r], "vocabulary is empty"),
    "duplicate class": (lambda r, t: [r, "--class", "road", "--class", "Road"], "duplicate class"),
    "bbox outside": (lambda r, t: [r, *CLASSES, "--bbox", "0,0,10,10"], "does not overlap"),
    "unknown crs": (
        lambda r, t: [r, *CLASSES, "--bbox", "0,0,1,1", "--bbox-crs", "EPSG:999999"],
        "unknown CRS",
    ),
    "gsd too fine": (lambda r, t: [r, *CLASSES, "--gsd", "0.1"], "outside the allowed range"),
    "gsd too coarse": (lambda r, t: [r, *CLASSES, "--gsd", "65"], "outside the allowed range"),
    "unknown method": (lambda r, t: [r, *CLASSES, "--method", "nope"], "unknown method"),
}


def _text_file(folder):
    path = Path(folder) / "not_a_raster.tif"
    path.write_text("hello")
    return str(path)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_clearly_and_writes_nothing(case, tmp_path, raster, capsys):
    build, message = BAD_INPUTS[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = segment(*build(raster, tmp_path), "--out", out_dir / "o.tif", *TINY)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert listing(out_dir) == []


@pytest.mark.parametrize(
    "out, message",
    [("missing/o.tif", "folder does not exist"), ("/proc/o.tif", "not writable"), ("dir", "is a folder")],
)
def test_bad_output_location(out, message, tmp_path, raster, capsys):
    (tmp_path / "dir").mkdir()
    target = out if out.startswith("/") else tmp_path / out
    assert segment(raster, *CLASSES, "--out", target, *TINY) == 2
    assert message in capsys.readouterr().err
    assert listing(tmp_path) == ["dir", "in"]


def test_existing_sidecar_is_not_overwritten(tmp_path, raster, capsys):
    (tmp_path / "o.json").write_text("{}")
    assert segment(raster, *CLASSES, "--out", tmp_path / "o.tif", *TINY) == 2
    assert "sidecar already exists" in capsys.readouterr().err
    assert (tmp_path / "o.json").read_text() == "{}"


@pytest.mark.skipif(not OEM.exists(), reason="shared OpenEarthMap tile not present")
def test_real_tile_window(tmp_path):
    out = tmp_path / "oem.tif"
    bbox = "346100,5647800,346200,5647900"  # 100 m x 100 m = 200 x 200 px of the 0.5 m tile
    assert (
        segment(
            OEM, *CLASSES, "--class", "tree", "--out", out, *TINY, "--bbox", bbox, "--bbox-crs", "EPSG:25832"
        )
        == 0
    )
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == (200, 200)
    assert ds.GetGeoTransform() == (346100.0, 0.5, 0.0, 5647900.0, 0.0, -0.5)
    record = json.loads((tmp_path / "oem.json").read_text())
    assert record["settings"]["working_size"] == [90, 90]  # 200 px x 448/1000, rounded
