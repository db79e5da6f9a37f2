"""The expected run time before a run: measured seconds per window, else the bench figure scaled by the
device's matmul speed; the worker's estimate reports it and each finished run measures it."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from raster_files import random_raster

from engine.pipeline.run_time import (
    KEPT_RUNS,
    REFERENCE,
    SpeedKey,
    SpeedStore,
    expected_run_time,
    fit_runs,
    reference_for,
    sam_architecture,
    setup_seconds_of_run,
    windows_of_run,
)

TINY = {
    "clip": "RSOVSeg-Tiny-ViT-16",
    "upsampler": "none",
    "random_weights": True,
    "templates": "remote-sensing",
}
SEGEARTH = SpeedKey("segearth-ov", "cpu", "float32")


def test_a_runs_window_time_leaves_out_what_happens_once_per_run():
    record = {
        "timings_s": {"model_load": 3.0, "text": 0.5, "statistics": 0.25, "inference": 5.0, "total": 10.75},
        "windows": {"crops_evaluated": 7},
    }
    assert windows_of_run(record) == (7, 10.75 - 3.0 - 0.5 - 0.25)
    assert windows_of_run({"timings_s": {"total": 2.0}, "windows": {"crops_evaluated": 0}}) is None
    assert windows_of_run({"windows": {"crops_evaluated": 3}}) is None
    assert setup_seconds_of_run(record) == 3.5  # loading the model + the text
    cached = {**record, "timings_s": {**record["timings_s"], "model_load": 0.01}}
    assert setup_seconds_of_run(cached) is None  # the model was loaded already: nothing to learn


def test_the_fit_separates_a_runs_fixed_cost_from_each_windows():
    rng = np.random.default_rng(0)
    counts = [1, 1, 9, 49, 4, 25]
    runs = [(n, 2.0 + 0.25 * n + rng.normal(0, 0.05)) for n in counts]
    slope, intercept = np.polyfit([n for n, _ in runs], [t for _, t in runs], 1)  # independent fit
    overhead, per_window = fit_runs(runs)
    assert abs(per_window - slope) < 1e-9 and abs(overhead - intercept) < 1e-9
    assert abs(per_window - 0.25) < 0.01 and abs(overhead - 2.0) < 0.1
    # One window count only: no way to split, so the plain ratio; a falling line too.
    assert fit_runs([(4, 2.0), (4, 3.0)]) == (0.0, 5.0 / 8)
    assert fit_runs([(1, 5.0), (9, 3.0)]) == (0.0, 8.0 / 10)


def test_the_store_keeps_the_last_runs(tmp_path):
    store = SpeedStore(tmp_path / "sub" / "speed.json")
    assert store.runs(SEGEARTH) == [] and store.setup_seconds(SEGEARTH) is None
    for index in range(KEPT_RUNS + 3):
        store.add(SEGEARTH, index + 1, 0.5 * (index + 1), setup_seconds=float(index) if index % 2 else None)
    assert store.runs(SEGEARTH) == [(n, 0.5 * n) for n in range(4, KEPT_RUNS + 4)]  # the last ones
    setups = [float(i) for i in range(KEPT_RUNS + 3) if i % 2]
    assert store.setup_seconds(SEGEARTH) == float(np.median(setups[-KEPT_RUNS:]))
    other = SpeedKey("segearth-ov", "cpu", "bfloat16")
    assert store.runs(other) == []  # keys do not mix
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["speed.json"]  # no temporary left


def test_an_unreadable_store_loses_only_its_measurements(tmp_path):
    path = tmp_path / "speed.json"
    path.write_text("{not json")
    store = SpeedStore(path)
    assert store.runs(SEGEARTH) == []
    store.add(SEGEARTH, 3, 0.75)
    assert store.runs(SEGEARTH) == [(3, 0.75)]
    assert json.loads(path.read_text()) == {SEGEARTH.text(): {"runs": [[3, 0.75]], "setup": []}}


def test_a_measurement_wins_over_the_reference_and_the_reference_scales_with_matmul_speed(tmp_path):
    reference = REFERENCE[("segearth-ov", "", "float32")]
    at_bench_speed = expected_run_time(SEGEARTH, 49, None, {"float32": reference.peak_gflops})
    assert at_bench_speed["basis"] == "reference"
    assert abs(at_bench_speed["window_seconds"] - 49 * reference.seconds_per_window) < 1e-9
    assert at_bench_speed["setup_seconds"] == reference.setup_seconds > 0  # the model is not loaded
    assert at_bench_speed["seconds"] == at_bench_speed["window_seconds"] + reference.setup_seconds
    twice_as_fast = expected_run_time(SEGEARTH, 49, None, {"float32": 2 * reference.peak_gflops}, True)
    assert abs(twice_as_fast["seconds"] - at_bench_speed["window_seconds"] / 2) < 1e-9  # loaded: no setup
    assert expected_run_time(SEGEARTH, 49, None, None) is None  # no speed known at all

    store = SpeedStore(tmp_path / "speed.json")
    store.add(SEGEARTH, 1, 2.5, setup_seconds=8.0)  # one window: mostly the run's fixed cost
    store.add(SEGEARTH, 9, 4.5)  # the model was loaded already: no setup sample
    store.add(SEGEARTH, 49, 14.5, setup_seconds=6.0)
    measured = expected_run_time(SEGEARTH, 100, store, {"float32": reference.peak_gflops})
    overhead, per_window = fit_runs([(1, 2.5), (9, 4.5), (49, 14.5)])
    assert measured["basis"] == "measured" and measured["runs"] == 3
    assert abs(measured["window_seconds"] - (overhead + 100 * per_window)) < 1e-9
    assert abs(per_window - 0.25) < 1e-9 and abs(overhead - 2.25) < 1e-9  # the points lie on a line
    assert measured["setup_seconds"] == 7.0  # median of 8 and 6
    assert expected_run_time(SEGEARTH, 100, store, None, model_loaded=True)["seconds"] == pytest.approx(27.25)


def test_reseg_clip_reference_follows_the_sam_architecture():
    assert sam_architecture(None) == "vit_h"  # the registry's default SAM
    assert sam_architecture("sam-vit-b") == sam_architecture("/w/sam_vit_b_01ec64.pth") == "vit_b"
    default = reference_for(SpeedKey("reseg-clip", "cpu", "float32"))
    small = reference_for(SpeedKey("reseg-clip", "cpu", "float32", sam="sam-vit-b"))
    assert default.case.endswith("sam-vit-h/float32") and small.case == "cpu/per-km2/reseg-clip/float32"
    assert default.seconds_per_window > small.seconds_per_window
    # Its SAM runs in float32 whatever CLIP's type: the bf16 case scales with the float32 peak.
    assert reference_for(SpeedKey("reseg-clip", "cpu", "bfloat16", sam="vit_b")).peak_dtype == "float32"
    assert reference_for(SpeedKey("other", "cpu", "float32")) is None


def test_worker_estimate_states_the_time_and_a_finished_run_measures_it(tmp_path, monkeypatch):
    import engine.cli.run_speed as run_speed
    import engine.cli.worker as worker_module

    monkeypatch.setenv("RS_OVSEG_SPEED_FILE", str(tmp_path / "speed.json"))
    src = random_raster(tmp_path / "in.tif", 300, 300)
    served = worker_module.Worker(worker_module.Channel(io.StringIO()))
    args = {"input": src, "gsd": 1.0, "device": "cpu", "dtype": "float32", **TINY}
    first = served.estimate(args)
    time = first["time"]
    assert time["basis"] == "reference" and time["device"] == "cpu"
    peak = run_speed._peaks[("cpu", "float32")]
    reference = REFERENCE[("segearth-ov", "", "float32")]
    expected = first["crop_evaluations"] * reference.seconds_per_window * reference.peak_gflops / peak
    assert abs(time["window_seconds"] - expected) < 1e-9
    assert time["setup_seconds"] == reference.setup_seconds  # nothing loaded yet

    result = served.segment("s1", {**args, "classes": ["building", "road"], "out": str(tmp_path / "o.tif")})
    windows, seconds = windows_of_run(result["record"])
    after = served.estimate(args)["time"]
    assert after["basis"] == "measured" and after["runs"] == 1
    assert abs(after["seconds_per_window"] - round(seconds, 6) / windows) < 1e-9  # one run: the ratio
    # The worker holds the model now: the time is the windows' alone.
    assert after["setup_seconds"] == 0.0
    assert abs(after["seconds"] - first["crop_evaluations"] * after["seconds_per_window"]) < 1e-9
    # A fresh worker (QGIS restarted) has to load it: the setup measured by that run comes back.
    fresh = worker_module.Worker(worker_module.Channel(io.StringIO())).estimate(args)["time"]
    setup = setup_seconds_of_run(result["record"])  # None if the tiny model loaded in no time
    expected_setup = reference.setup_seconds if setup is None else round(setup, 6)
    assert abs(fresh["setup_seconds"] - expected_setup) < 1e-9
    # Another float type has no measurement yet: the reference again.
    assert served.estimate({**args, "dtype": "bfloat16"})["time"]["basis"] == "reference"


def test_no_time_for_a_device_that_is_not_there_but_the_sizes_still_come(tmp_path, monkeypatch):
    import torch

    import engine.cli.worker as worker_module

    if torch.cuda.is_available():
        return
    src = random_raster(tmp_path / "in.tif", 120, 120)
    served = worker_module.Worker(worker_module.Channel(io.StringIO()))
    summary = served.estimate({"input": src, "gsd": 1.0, "device": "cuda"})
    assert summary["time"] is None and summary["crops"] == 1
