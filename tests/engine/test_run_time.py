"""The expected run time before a run: measured seconds per window, else the bench figure scaled by the
device's matmul speed; the worker's estimate reports it and each finished run measures it."""

from __future__ import annotations

import io
import json

from raster_files import random_raster

from engine.pipeline.run_time import (
    KEPT_RUNS,
    REFERENCE,
    SpeedKey,
    SpeedStore,
    expected_run_time,
    reference_for,
    sam_architecture,
    setup_seconds_of_run,
    window_seconds_of_run,
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
    assert abs(window_seconds_of_run(record) - (10.75 - 3.0 - 0.5 - 0.25) / 7) < 1e-12
    assert setup_seconds_of_run(record) == 3.5  # loading the model + the text
    cached = {**record, "timings_s": {**record["timings_s"], "model_load": 0.01}}
    assert setup_seconds_of_run(cached) is None  # the model was loaded already: nothing to learn
    assert window_seconds_of_run({"timings_s": {"total": 2.0}, "windows": {"crops_evaluated": 0}}) is None
    assert window_seconds_of_run({"windows": {"crops_evaluated": 3}}) is None


def test_the_store_keeps_the_last_runs_and_answers_their_median(tmp_path):
    store = SpeedStore(tmp_path / "sub" / "speed.json")
    assert store.seconds_per_window(SEGEARTH) is None
    samples = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.4]
    for seconds in samples:
        store.add(SEGEARTH, seconds)
    kept = samples[-KEPT_RUNS:]
    middle = sorted(kept)[len(kept) // 2]  # odd count: the middle one
    assert store.seconds_per_window(SEGEARTH) == (middle, KEPT_RUNS)
    other = SpeedKey("segearth-ov", "cpu", "bfloat16")
    assert store.seconds_per_window(other) is None  # keys do not mix
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["speed.json"]  # no temporary left


def test_an_unreadable_store_loses_only_its_measurements(tmp_path):
    path = tmp_path / "speed.json"
    path.write_text("{not json")
    store = SpeedStore(path)
    assert store.seconds_per_window(SEGEARTH) is None
    store.add(SEGEARTH, 0.25)
    assert store.seconds_per_window(SEGEARTH) == (0.25, 1)
    assert json.loads(path.read_text()) == {SEGEARTH.text(): {"window": [0.25], "setup": []}}


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
    store.add(SEGEARTH, 0.5, setup_seconds=8.0)
    store.add(SEGEARTH, 0.7)  # a run that found the model loaded: no setup sample
    store.add(SEGEARTH, 0.6, setup_seconds=6.0)
    measured = expected_run_time(SEGEARTH, 10, store, {"float32": reference.peak_gflops})
    assert measured["basis"] == "measured" and measured["runs"] == 3
    assert abs(measured["window_seconds"] - 10 * 0.6) < 1e-12  # median of 0.5, 0.7, 0.6
    assert measured["setup_seconds"] == 7.0  # median of 8 and 6
    assert expected_run_time(SEGEARTH, 10, store, None, model_loaded=True)["seconds"] == 10 * 0.6


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
    per_window = window_seconds_of_run(result["record"])
    after = served.estimate(args)["time"]
    assert after["basis"] == "measured" and after["runs"] == 1
    assert abs(after["seconds_per_window"] - round(per_window, 6)) < 1e-9
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
