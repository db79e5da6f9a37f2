"""``segment --method segearth-ov3`` end to end with a tiny random SAM 3: outputs, presets and thresholds,
scoring without a softmax (against the method's maps scored by hand), labels independent of the read
tiles, and clear errors for bad options or a missing ``sam3``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from osgeo import gdal
from raster_files import UTM_1M, random_bands, write_raster

from engine.cli import main
from engine.errors import UserError
from engine.methods.segearth_ov3 import sam3_import

if not sam3_import.sam3_available():
    pytest.skip("sam3 is not installed", allow_module_level=True)

gdal.UseExceptions()
TINY = ["--method", "segearth-ov3", "--random-weights", "--sam3-config", "tiny"]
CLASSES = ["--class", "building,roof", "--class", "tree", "--class", "water"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Tiny models only (see conftest)."""


@pytest.fixture(scope="module")
def raster(tmp_path_factory):
    bands = random_bands(150, 130, seed=4)
    bands[:, 30:90, 20:100] //= 3
    return write_raster(tmp_path_factory.mktemp("in") / "in.tif", bands, gt=UTM_1M, epsg=32632)


def segment(*argv):
    return main(["segment", *map(str, argv), "--quiet"])


def read(path):
    return gdal.Open(str(path)).ReadAsArray()


def test_segment_writes_labels_scored_without_softmax(tmp_path, raster, capsys):
    out, conf = tmp_path / "out.tif", tmp_path / "conf.tif"
    argv = [*CLASSES, *TINY, "--dtype", "float32", "--out", out, "--confidence", conf]
    assert segment(raster, *argv) == 0, capsys.readouterr().err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["method"]["method"] == "segearth-ov3"
    assert record["settings"]["working_gsd_m"] == 1.0  # native resolution, as the reference
    assert record["settings"]["threshold"] == 0.1 and record["settings"]["threshold_kind"] == "score"
    labels, confidence = read(out), read(conf)

    # Independently: the method's maps for the one crop (the 150 x 130 raster fits in a 512 window),
    # max over synonyms, argmax, threshold.
    from engine.methods.registry import MethodOptions, ModelCache
    from engine.methods.segearth_ov3.factory import create_segearth_ov3

    options = MethodOptions(random_weights=True, extra={"sam3_config": "tiny"})
    method = create_segearth_ov3(options, ModelCache())
    method.set_queries(["building", "roof", "tree", "water"])
    image = torch.from_numpy(np.ascontiguousarray(gdal.Open(str(raster)).ReadAsArray()))[None]
    maps = method.crop_logits(image)[0]
    classes = torch.stack([maps[:2].amax(0), maps[2], maps[3]])
    best, winner = classes.max(0)
    expected = torch.where(best < 0.1, 0, winner + 1).numpy()
    assert np.array_equal(labels, expected)
    np.testing.assert_allclose(confidence, best.numpy(), atol=1e-6)
    assert len(np.unique(labels)) >= 2


def test_labels_do_not_depend_on_read_tiles(tmp_path, raster, capsys):
    """At 0.25 m the working image is 600 x 520: 2 x 2 overlapping 512-px windows (the last of each axis
    shifted back inside), which 128-px read tiles cut through."""
    runs = {}
    for tile in (128, 2048):
        out = tmp_path / f"t{tile}.tif"
        argv = [*CLASSES, *TINY, "--out", out, "--gsd", 0.25, "--tile-size", tile, "--sam3-preset", "potsdam"]
        assert segment(raster, *argv) == 0, capsys.readouterr().err
        record = json.loads(out.with_suffix(".json").read_text())
        runs[tile] = (read(out), record["windows"])
    assert runs[128][1]["tiles"] > 1 and runs[128][1]["unique_crops"] == 4
    assert runs[128][1]["crops_evaluated"] == 4  # each window once, whatever the tiles
    assert np.array_equal(runs[128][0], runs[2048][0])


def test_preset_threshold_and_explicit_threshold(tmp_path, raster, capsys):
    out = tmp_path / "p.tif"
    assert segment(raster, *CLASSES, *TINY, "--out", out, "--sam3-preset", "loveda") == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["settings"]["threshold"] == 0.5
    assert record["method"]["settings"]["confidence_threshold"] == 0.5
    assert record["settings"]["crop_size"] == 1024
    argv = [*CLASSES, *TINY, "--out", out, "--overwrite", "--sam3-preset", "loveda", "--threshold", "0.2"]
    assert segment(raster, *argv, "--instance-confidence", "0.3", "--sam3-parts", "semantic,presence") == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["settings"]["threshold"] == 0.2
    settings = record["method"]["settings"]
    assert settings["confidence_threshold"] == 0.3 and settings["use_instances"] is False


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--sam3-config", "huge"], "unknown --sam3-config"),
        (["--sam3-preset", "mars"], "unknown --sam3-preset"),
        (["--sam3-parts", "presence"], "includes instances or semantic"),
        (["--instance-confidence", "2"], "between 0 and 1"),
    ],
)
def test_bad_options_are_user_errors(tmp_path, raster, capsys, argv, message):
    out = tmp_path / "bad.tif"
    assert segment(raster, *CLASSES, *TINY, "--out", out, *argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_sam3_options_belong_to_segearth_ov3(tmp_path, raster, capsys):
    out = tmp_path / "x.tif"
    assert segment(raster, *CLASSES, "--random-weights", "--out", out, "--sam3-preset", "loveda") == 2
    assert "--sam3-preset only apply to --method segearth-ov3" in capsys.readouterr().err


def test_missing_sam3_is_a_message_not_a_traceback(monkeypatch):
    monkeypatch.setattr(sam3_import, "sam3_available", lambda: False)
    with pytest.raises(UserError, match="Set up engine"):
        sam3_import.import_sam3()


def test_tiny_needs_random_weights(tmp_path, raster, capsys):
    out = tmp_path / "t.tif"
    argv = [*CLASSES, "--method", "segearth-ov3", "--sam3-config", "tiny", "--out", out]
    assert segment(raster, *argv) == 2
    assert "--random-weights" in capsys.readouterr().err


def test_reference_fidelity_runs_the_per_query_loop(tmp_path, raster, capsys):
    out = tmp_path / "ref.tif"
    assert segment(raster, *CLASSES, *TINY, "--out", out, "--fidelity", "reference") == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["method"]["settings"]["per_query_loop"] is True
    assert any("one query at a time" in note for note in record["options"]["reference_changes"])
