"""ReSeg-CLIP wired into the engine: ``segment --method reseg-clip`` end to end with tiny random CLIP and
SAM, the on-disk mask cache across vocabularies, the worker's option names, and bad options.

SAM's automatic mask generator on random weights is slow even for the tiny SAM (~1 s per parameter set
and SAM window on this machine), so the runs here use ONE parameter set without crop layers
(``--sam-parameter-sets``) and the schedule ``sam1,self``; the reference's four sets are covered by
tests/engine/test_reseg_method.py and tests/engine/test_sam_masks.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from raster_files import UTM_1M, random_bands, write_raster

from engine.cli import main
from engine.errors import UserError
from engine.methods.reseg.spec import parse_parameter_sets
from engine.options import SegmentOptions

gdal.UseExceptions()
ONE_SET = json.dumps(
    [
        {
            "points_per_side": 2,
            "pred_iou_thresh": 0,
            "stability_score_thresh": 0,
            "min_mask_region_area": 0,
            "crop_n_layers": 0,
        }
    ]
)
TINY = ["--method", "reseg-clip", "--clip", "RSOVSeg-Tiny-ViT-16", "--random-weights", "--gsd", "1"]
FAST_SAM = ["--sam-parameter-sets", ONE_SET, "--schedule", "sam1,self"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Every test here runs tiny models (see conftest)."""


@pytest.fixture()
def raster(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    bands = random_bands(96, 80)
    for i in range(3):
        bands[i, 20:60, 30:80] = 60 * i  # one flat block SAM may segment
    return write_raster(folder / "in.tif", bands, gt=UTM_1M, epsg=32632)


def segment(*argv):
    return main(["segment", *map(str, argv), "--quiet"])


def test_segment_end_to_end_and_the_mask_cache_spares_sam_for_a_new_vocabulary(tmp_path, raster, capsys):
    cache = tmp_path / "masks"
    out = tmp_path / "a.tif"
    classes = ["--class", "building,roof", "--class", "road", "--class", "tree"]
    code = segment(raster, *classes, "--out", out, *TINY, *FAST_SAM, "--mask-cache", cache)
    assert code == 0, capsys.readouterr().err
    labels = gdal.Open(str(out)).ReadAsArray()
    assert labels.shape == (80, 96) and labels.dtype == np.uint8 and labels.max() <= 3
    record = json.loads((tmp_path / "a.json").read_text())
    method = record["method"]
    assert method["method"] == "reseg-clip" and method["schedule"] == "full,sam1,self"
    cost = method["cost"]
    # Read after the run: one 96x80 SAM window, one encoder pass, real SAM and CLIP time.
    assert cost["sam_encoder_passes"] == 1 and cost["sam_windows_computed"] == 1
    assert cost["sam_seconds"] > 0 and cost["clip_seconds"] > 0
    assert (record["settings"]["crop_size"], record["settings"]["crop_stride"]) == (224, 224)
    assert record["settings"]["logit_scale"] == 1.0  # the reference softmaxes raw cosines
    assert record["method_options"]["extra"]["mask_cache_dir"] == str(cache)
    assert record["method_options"]["extra"]["sam_parameter_sets"][0]["points_per_side"] == 2
    assert record["timings_s"]["prepare_window"] > 0
    assert len(list(cache.glob("*.npz"))) == 1

    # Another vocabulary, same imagery and cache folder: no SAM encoder pass at all.
    code = segment(
        raster,
        "--class",
        "water",
        "--class",
        "field",
        "--out",
        tmp_path / "b.tif",
        *TINY,
        *FAST_SAM,
        "--mask-cache",
        cache,
    )
    assert code == 0, capsys.readouterr().err
    cost = json.loads((tmp_path / "b.json").read_text())["method"]["cost"]
    assert cost["sam_encoder_passes"] == 0 and cost["sam_windows_cached"] == 1
    assert cost["sam_windows_computed"] == 0 and cost["clip_seconds"] > 0
    assert gdal.Open(str(tmp_path / "b.tif")).ReadAsArray().max() <= 2


def test_sam_windows_are_whole_grid_cells_whatever_the_tiles(tmp_path, capsys):
    """Read windows are widened to the global SAM-window grid: each of the 3 x 2 grid cells of a 480 x 400
    raster is segmented once and whole (a tile's halo must not make a strip its own SAM window), and the
    labels are the same with 4 read tiles as with one."""
    bands = random_bands(480, 400)
    bands[:, 100:300, 50:400] //= 4  # some structure for SAM
    raster = write_raster(tmp_path / "big.tif", bands, gt=UTM_1M, epsg=32632)
    runs = {}
    for tile_size in (240, 1024):
        out = tmp_path / f"t{tile_size}.tif"
        argv = ["--class", "road", "--class", "tree", "--out", out, "--tile-size", tile_size]
        code = segment(raster, *argv, *TINY, *FAST_SAM, "--sam-window", 224)
        assert code == 0, capsys.readouterr().err
        record = json.loads(out.with_suffix(".json").read_text())
        runs[tile_size] = (
            gdal.Open(str(out)).ReadAsArray(),
            record["method"]["cost"],
            record["windows"]["tiles"],
        )
    labels, cost, tiles = runs[240]
    assert tiles > 1
    assert cost["sam_windows_computed"] == 6 and cost["sam_encoder_passes"] == 6
    assert np.array_equal(labels, runs[1024][0])


def test_schedule_longer_than_the_model_is_a_clear_error(tmp_path, raster, capsys):
    out = tmp_path / "o.tif"
    code = segment(raster, "--class", "road", "--out", out, *TINY, "--schedule", "2*full,sam1,sam2,self")
    assert code == 2
    err = capsys.readouterr().err
    assert "names 5 blocks" in err and "has only 3" in err
    assert not out.exists() and not (tmp_path / "o.json").exists()


@pytest.mark.parametrize(
    "extra_args, message",
    [
        (["--method", "segearth-ov", "--sam", "tiny"], "only apply to --method reseg-clip"),
        (["--method", "reseg-clip", "--sam-parameter-sets", "[1, 2]"], "non-empty JSON list of objects"),
        (["--method", "reseg-clip", "--sam-parameter-sets", "nofile.json"], "neither a JSON list"),
        (
            [
                "--method",
                "reseg-clip",
                "--sam-parameter-sets",
                '[{"points_per_side": 0, "pred_iou_thresh": 0.5,'
                ' "stability_score_thresh": 0.5, "min_mask_region_area": 1}]',
            ],
            "points_per_side must be at least 1",
        ),
        (["--method", "reseg-clip", "--sam-window", "100"], "at least one crop"),
    ],
)
def test_bad_reseg_options_fail_before_writing(extra_args, message, tmp_path, raster, capsys):
    out = tmp_path / "o.tif"
    args = ["--clip", "RSOVSeg-Tiny-ViT-16", "--random-weights"]
    assert segment(raster, "--class", "road", "--out", out, *args, *extra_args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_option_mapping_into_method_extra(tmp_path):
    sets_file = tmp_path / "sets.json"
    sets_file.write_text(ONE_SET)
    raw = {
        "input": "x.tif",
        "method": "reseg-clip",
        "sam": "sam-vit-b",
        "schedule": "sam1,self",
        "sam_window": 448,
        "mask_cache": str(tmp_path),
        "sam_parameter_sets": str(sets_file),
    }
    assert SegmentOptions.from_mapping(raw).method_extra() == {
        "sam": "sam-vit-b",
        "schedule": "sam1,self",
        "sam_window": 448,
        "mask_cache_dir": str(tmp_path),
        "sam_parameter_sets": json.loads(ONE_SET),
    }
    assert SegmentOptions.from_mapping({"input": "x.tif"}).method_extra() == {}
    assert parse_parameter_sets(json.loads(ONE_SET)) == json.loads(ONE_SET)  # worker: JSON already parsed
    with pytest.raises(UserError, match="whole number"):
        SegmentOptions.from_mapping({**raw, "sam_window": "big"})


def test_worker_accepts_the_same_option_names(tmp_path, raster):
    from engine.cli.worker import Channel, Worker

    stream = io.StringIO()
    worker = Worker(Channel(stream))
    base = {
        "input": raster,
        "method": "reseg-clip",
        "clip": "RSOVSeg-Tiny-ViT-16",
        "random_weights": True,
        "gsd": 0.2,
    }
    worker.handle({"id": "e1", "command": "estimate", "args": base})
    worker.handle({"id": "e2", "command": "estimate", "args": {**base, "method": "segearth-ov"}})
    args = {
        **base,
        "gsd": 1,
        "classes": ["road", "tree"],
        "out": str(tmp_path / "w.tif"),
        "sam_parameter_sets": json.loads(ONE_SET),
        "schedule": "sam1,self",
        "mask_cache": str(tmp_path / "masks"),
        "sam_window": 224,
    }
    worker.handle({"id": "s1", "command": "segment", "args": args})
    finals = {
        m["id"]: m
        for m in map(json.loads, stream.getvalue().splitlines())
        if m["event"] != "progress" and m["event"] != "log"
    }
    # Working grid 480x400 at 0.2 m: ReSeg-CLIP tiles 224-px crops without overlap (3 x 2 crops), while
    # SegEarth-OV slides them by 112 px (4 x 3): estimates are planned with the method's own crop grid.
    assert finals["e1"]["result"]["working_size"] == [480, 400]
    assert finals["e1"]["result"]["crops"] == 6 and finals["e2"]["result"]["crops"] == 12
    assert finals["s1"]["event"] == "result", finals["s1"]
    record = finals["s1"]["result"]["record"]
    assert record["method"]["settings"]["sam_window_px"] == 224
    assert record["method"]["cost"]["sam_encoder_passes"] == 1
    assert Path(finals["s1"]["result"]["out"]).exists()


def test_random_sams_of_different_seeds_never_share_cached_masks():
    from engine.methods.registry import MethodOptions, ModelCache, create_method

    def fingerprint(seed):
        options = MethodOptions(clip="RSOVSeg-Tiny-ViT-16", random_weights=True, seed=seed)
        method = create_method("reseg-clip", options, ModelCache())
        return method.masks._fingerprint, method.describe()["sam"]["seed"]

    (first, seed0), (again, _), (other, seed1) = fingerprint(0), fingerprint(0), fingerprint(1)
    assert first == again and first != other and (seed0, seed1) == (0, 1)
