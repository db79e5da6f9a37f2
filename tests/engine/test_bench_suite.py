"""The benchmark suite's plumbing: a tiny case through the real CLI emits every field; rasters, ratios.

Nothing here asserts a timing: only that the numbers exist, are consistent with each other, and that
the VRT mosaic and the label agreement compute what they claim.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from osgeo import gdal

from engine.bench.cases import BenchCase, mosaic_vrt, synthetic_raster
from engine.bench.interleave import interleaved_cost_ratio
from engine.bench.peak import measure_matmul_peak
from engine.bench.report import REQUIRED_FIELDS, summarise
from engine.cli.bench import labels_agreement, relative_cost_fields, scaling_fields

gdal.UseExceptions()
ROOT = Path(__file__).resolve().parents[2]


def test_tiny_case_through_the_cli_emits_every_field(tmp_path):
    tile = synthetic_raster(tmp_path / "tile.tif", 300)
    out = tmp_path / "results.jsonl"
    command = [
        sys.executable,
        "-m",
        "engine",
        "bench",
        "--quick",
        "--case",
        "cpu/segearth-ov/tile/float32",
        "--tile",
        str(tile),
        "--out",
        str(out),
        "--peak-seconds",
        "0.05",
        "--no-micro",
    ]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    printed = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    assert printed == lines
    cases = {line["case"]: line for line in lines}
    assert cases["machine"]["quick"] is True
    peak = cases["cpu/matmul-peak/float32"]["gflops"]
    record = cases["cpu/segearth-ov/tile/float32"]
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    assert not missing
    assert record["raster_size"] == [256, 256]  # the quick tile: top-left 256² of --tile
    assert record["working_gsd_m"] == pytest.approx(0.5 * 1000 / 448, rel=1e-5)
    assert record["repeats"] == 1 and record["seconds"] > 0
    assert record["gflop"] > 0 and record["crops_evaluated"] >= 1
    # MFU uses the peak measured in the case's own process around its timed runs (same load).
    assert record["peak_gflops"] == max(record["peak_gflops_before_after"]) > 0
    assert record["peak_gflops_suite_start"] == peak
    # achieved_gflops is rounded to 0.01: allow that rounding in the ratio
    case_peak = record["peak_gflops"]
    assert record["mfu"] == pytest.approx(record["achieved_gflops"] / case_peak, abs=0.006 / case_peak + 1e-4)
    assert record["peak_rss_bytes"] > 50 * 2**20
    if sys.platform.startswith("linux"):  # each timed run's own peak; the process's covers the warm-up too
        assert record["peak_rss_bytes"] == max(record["peak_rss_per_run_bytes"])
        assert len(record["peak_rss_per_run_bytes"]) == record["repeats"]
    assert record["process_peak_rss_bytes"] >= record["peak_rss_bytes"]
    assert record["sam_encoder_passes"] is None  # SegEarth-OV runs no SAM
    assert "inference" in record["stage_seconds"]


def test_summary_fields_are_consistent():
    record = summarise(
        case="c",
        method="segearth-ov",
        device="cpu",
        device_name="cpu",
        dtype="float32",
        raster_size=(1000, 1000),
        native_gsd=0.5,
        working_gsd=1.116,
        working_size=(448, 448),
        seconds=[4.0, 2.0, 3.0],
        flop_by_part={"clip": 3 * 10**11, "upsampler": 3 * 10**11},
        peak_gflops=300.0,
        peak_rss_bytes=2**30,
        sam_encoder_passes=None,
        stage_seconds={"inference": 2.5},
        crops_evaluated=9,
    )
    assert record["seconds"] == 3.0  # the median
    assert record["area_km2"] == pytest.approx(0.25)
    assert record["km2_per_min"] == pytest.approx(0.25 / 3.0 * 60, rel=1e-3)
    assert record["megapixels_per_s"] == pytest.approx(1 / 3, rel=1e-3)
    assert record["achieved_gflops"] == pytest.approx(200.0)
    assert record["mfu"] == pytest.approx(200.0 / 300.0, abs=1e-4)
    assert set(REQUIRED_FIELDS) <= set(record)


def test_mosaic_vrt_repeats_the_piece(tmp_path):
    piece = synthetic_raster(tmp_path / "piece.tif", 96)
    vrt = mosaic_vrt(tmp_path / "m.vrt", piece, 4, edge=64)
    ds = gdal.Open(str(vrt))
    assert (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (256, 256, 3)
    data = ds.ReadAsArray()
    original = gdal.Open(str(piece)).ReadAsArray()[:, :64, :64]
    for i in range(4):
        for j in range(4):
            np.testing.assert_array_equal(data[:, 64 * i : 64 * (i + 1), 64 * j : 64 * (j + 1)], original)
    assert ds.GetGeoTransform() == gdal.Open(str(piece)).GetGeoTransform()
    assert ds.GetRasterBand(1).GetColorInterpretation() == gdal.GCI_RedBand


def _labels(path: Path, array: np.ndarray) -> Path:
    ds = gdal.GetDriverByName("GTiff").Create(str(path), array.shape[1], array.shape[0], 1, gdal.GDT_Byte)
    ds.GetRasterBand(1).WriteArray(array)
    ds = None
    return path


def test_label_agreement_is_the_fraction_of_equal_pixels(tmp_path):
    a = np.zeros((10, 10), np.uint8)
    b = a.copy()
    b[:3, :5] = 2  # 15 of 100 pixels differ
    assert labels_agreement(_labels(tmp_path / "a.tif", a), _labels(tmp_path / "b.tif", b)) == 0.85


def test_scaling_ratios():
    small = {"case": "s", "area_km2": 0.25, "crops_evaluated": 9, "seconds": 2.0, "peak_rss_bytes": 1000}
    large = {"case": "l", "area_km2": 4.0, "crops_evaluated": 225, "seconds": 50.0, "peak_rss_bytes": 1100}
    ratios = scaling_fields(small, large)["scaling"]
    assert ratios["area_ratio"] == 16.0 and ratios["time_ratio"] == 25.0
    assert ratios["peak_rss_ratio"] == 1.1 and ratios["crop_evaluation_ratio"] == 25.0
    assert ratios["time_per_crop_ratio"] == 1.0
    assert ratios["sam_encoder_pass_ratio"] is None  # SegEarth-OV runs no SAM
    reseg = scaling_fields({**small, "sam_encoder_passes": 5}, {**large, "sam_encoder_passes": 20})
    assert reseg["scaling"]["sam_encoder_pass_ratio"] == 4.0


def test_reseg_scaling_pair_is_on_pixels_that_never_repeat():
    """A mosaic repeats its piece, and the pixel-keyed SAM mask cache would spare SAM for the copies."""
    from engine.bench.cases import default_suite

    for quick in (True, False):
        cases = {case.name: case for case in default_suite(["cpu"], quick=quick)}
        small, large = cases["cpu/reseg-clip/scaling/small"], cases["cpu/reseg-clip/scaling/large"]
        assert large.scaling_of == small.name and small.method == large.method == "reseg-clip"
        edges = [int(case.raster.removeprefix("synthetic:")) for case in (small, large)]
        assert edges[1] == 2 * edges[0]  # 4x the area
        assert large.warmup_raster == small.raster


def test_relative_cost_is_per_km2():
    segearth = {"case": "seg", "area_km2": 0.25, "seconds": 5.0}  # 20 s/km²
    reseg = {"case": "reseg", "area_km2": 1.0, "seconds": 30.0}  # 30 s/km²
    assert relative_cost_fields(segearth, reseg) == {"cost_relative_to": "seg", "cost_per_km2_ratio": 1.5}


def test_relative_cost_from_the_fastest_runs_too():
    segearth = {"case": "seg", "area_km2": 0.25, "seconds": 5.0, "seconds_all": [6.0, 5.0, 4.0]}
    reseg = {"case": "reseg", "area_km2": 1.0, "seconds": 30.0, "seconds_all": [30.0, 24.0, 33.0]}
    fields = relative_cost_fields(segearth, reseg)
    assert fields["cost_per_km2_ratio"] == 1.5  # medians: 30 s/km² over 20
    assert fields["cost_per_km2_ratio_fastest"] == 1.5  # fastest: 24 s/km² over 16
    reseg["seconds_all"] = [30.0, 32.0, 40.0]
    assert relative_cost_fields(segearth, reseg)["cost_per_km2_ratio_fastest"] == 1.875


def test_matmul_peak_reports_its_measurement():
    peak = measure_matmul_peak("cpu", torch.float32, size=256, seconds=0.02, bursts=3)
    assert peak.gflops >= peak.median_gflops > 0
    assert (peak.device, peak.dtype, peak.size) == ("cpu", "float32", 256)


def test_case_round_trips_through_json():
    case = BenchCase("x", options={"clip": "A"}, classes=("a,b", "c"), agreement_with="y")
    assert BenchCase.from_json(json.loads(json.dumps(case.to_json()))) == case


def test_every_mask_case_differs_from_the_reference_sets_only_in_its_thresholds():
    from engine.bench.cases import EVERY_MASK_SETS, default_suite
    from engine.cli.segment import parse_parameter_sets
    from engine.sam.parameter_sets import REFERENCE_PARAMETER_SETS, parameter_set_from_dict

    cases = {case.name: case for case in default_suite(["cpu"], quick=True)}
    case = cases["cpu/per-km2/reseg-clip-every-mask/float32"]
    assert case.cost_relative_to == "cpu/per-km2/segearth-ov/float32"
    assert case.raster == cases["cpu/per-km2/reseg-clip/float32"].raster
    # The default precision's pair compares like with like.
    reduced = cases["cpu/per-km2/reseg-clip/bfloat16"]
    assert reduced.cost_relative_to == "cpu/per-km2/segearth-ov/bfloat16"
    assert reduced.dtype == cases[reduced.cost_relative_to].dtype == "bfloat16"
    assert reduced.raster == case.raster
    sets = [
        parameter_set_from_dict(data, "x")
        for data in parse_parameter_sets(case.options["sam_parameter_sets"])
    ]
    assert [(s.pred_iou_thresh, s.stability_score_thresh) for s in sets] == [(0.0, 0.0)] * 4
    keep = ("points_per_side", "min_mask_region_area", "crop_n_layers", "crop_n_points_downscale_factor")
    assert [[getattr(s, k) for k in keep] for s in sets] == [
        [getattr(s, k) for k in keep] for s in REFERENCE_PARAMETER_SETS
    ]
    assert EVERY_MASK_SETS[0]["pred_iou_thresh"] == 0.0


def test_crop_flops_count_each_shared_crop_once():
    """A crop on a tile border is evaluated once and reused: counting it per tile inflated the FLOPs (and
    the MFU) of every multi-tile case."""
    from engine.bench.runner import crop_shapes, scale_to_evaluations
    from engine.pipeline.tiling import plan_tiles

    one_tile = plan_tiles(448, 448, 448, 448, 224, 112, 896, 4096)
    four_tiles = plan_tiles(1792, 1792, 1792, 1792, 224, 112, 896, 4096)
    assert one_tile.tile_count == 1 and four_tiles.tile_count == 4
    assert sum(crop_shapes(one_tile).values()) == one_tile.crop_evaluations == 9
    counted = sum(crop_shapes(four_tiles).values())
    assert counted == four_tiles.crop_evaluations == 15 * 15 < four_tiles.crop_runs
    assert crop_shapes(four_tiles) == {(224, 224): 225}
    parts = {"clip": 900, "logits": 90}
    assert scale_to_evaluations(parts, counted, 250) == {"clip": 1000, "logits": 100}
    assert scale_to_evaluations(parts, counted, None) == parts


def test_interleaved_ratio_alternates_single_runs_and_takes_the_median_pair():
    reference = BenchCase("ref", repeats=3)
    case = BenchCase("case", method="reseg-clip", repeats=3, cost_relative_to="ref")
    # Seconds per km² per call, in call order: the machine slows down in the middle pair.
    scripted = iter([10.0, 21.0, 20.0, 44.0, 10.0, 23.0])
    calls = []

    def seconds_per_km2(c):
        calls.append((c.name, c.repeats))
        return next(scripted)

    record = interleaved_cost_ratio(reference, case, 3, seconds_per_km2)
    assert calls == [("ref", 1), ("case", 1)] * 3
    assert record["cost_per_km2_ratios"] == [2.1, 2.2, 2.3]
    assert record["cost_per_km2_ratio"] == 2.2  # a ratio of medians would give 23 / 10 = 2.3
    assert record["case"] == "case/interleaved" and record["cost_relative_to"] == "ref"
    with pytest.raises(ValueError):
        interleaved_cost_ratio(reference, case, 0, seconds_per_km2)


def test_interleave_through_the_cli_adds_a_paired_record(tmp_path):
    tile = synthetic_raster(tmp_path / "tile.tif", 300)
    out = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "engine", "bench", "--quick", "--tile", str(tile), "--out", str(out)]
    command += ["--case", "cpu/segearth-ov/tile/float32", "--case", "cpu/reseg-clip/tile/float32"]
    command += ["--peak-seconds", "0.05", "--no-micro", "--interleave", "1"]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    cases = {line["case"]: line for line in map(json.loads, out.read_text().splitlines())}
    paired = cases["cpu/reseg-clip/tile/float32/interleaved"]
    assert paired["cost_relative_to"] == "cpu/segearth-ov/tile/float32" and paired["pairs"] == 1
    own, theirs = paired["seconds_per_km2"][0], paired["reference_seconds_per_km2"][0]
    assert own > 0 and theirs > 0
    assert paired["cost_per_km2_ratios"] == [pytest.approx(own / theirs, rel=1e-3)]
    assert paired["cost_per_km2_ratio"] == paired["cost_per_km2_ratios"][0]
