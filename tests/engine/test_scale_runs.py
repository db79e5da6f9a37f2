"""Runs in blocks: --resume after SIGKILL, and --executor dask on a LocalCluster (2 worker processes):
the same pixels as the local run, a worker killed mid-run, a block that keeps failing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from raster_files import random_raster

from engine.errors import UserError
from engine.pipeline.job import run_segment
from engine.pipeline.parts import parts_folder_for
from engine.pipeline.progress import ProgressEvent

gdal.UseExceptions()
ROOT = Path(__file__).resolve().parents[2]
TINY = ["--clip", "RSOVSeg-Tiny-ViT-16", "--upsampler", "none", "--random-weights", "--quiet"]
RUN = [
    *("--class", "building,roof", "--class", "road", "--class", "water"),
    *("--gsd", "1", "--tile-size", "96", "--batch-size", "3"),
]
OPTIONS = {
    "classes": ["building,roof", "road", "water"],
    "clip": "RSOVSeg-Tiny-ViT-16",
    "upsampler": "none",
    "random_weights": True,
    "gsd": 1.0,
    "tile_size": 96,
    "batch_size": 3,
    "block_tiles": 1,
}


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def pixels(path) -> np.ndarray:
    return gdal.Open(str(path)).ReadAsArray()


def cli(*argv, **kwargs):
    command = [sys.executable, "-m", "engine", "segment", *map(str, argv), *TINY]
    return subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The input and the local run's outputs (one block, no parts) to compare with."""
    folder = tmp_path_factory.mktemp("scale_runs")
    raster = random_raster(folder / "in.tif", 300, 220)
    out, conf = folder / "local.tif", folder / "local_conf.tif"
    run_segment({**OPTIONS, "input": raster, "out": str(out), "confidence": str(conf)})
    return {"folder": folder, "input": raster, "out": out, "confidence": conf}


def test_resume_after_sigkill_writes_the_same_bytes(scene, tmp_path):
    whole, killed = tmp_path / "whole.tif", tmp_path / "killed.tif"
    args = [scene["input"], *RUN, "--block-tiles", "1", "--resume"]
    done = cli(*args, "--out", whole, "--confidence", tmp_path / "whole_conf.tif")
    assert done.wait(timeout=300) == 0, done.stderr.read()
    parts = parts_folder_for(killed)
    victim = cli(*args, "--out", killed, "--confidence", tmp_path / "killed_conf.tif")
    deadline = time.monotonic() + 240
    while len(list(parts.glob("block-*.json"))) < 2 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    finished = len(list(parts.glob("block-*.json")))
    assert finished >= 2 and not killed.exists() and not killed.with_suffix(".json").exists()
    # Other options are another run: its parts are not reused.
    other = cli(*args[:-1], "--threshold", "0.5", "--resume", "--out", killed)
    assert other.wait(timeout=120) == 2 and "different run" in other.stderr.read()
    # Without --resume the parts are not silently dropped either.
    fresh = cli(*args[:-1], "--out", killed)
    assert fresh.wait(timeout=120) == 2 and "--resume" in fresh.stderr.read()
    resumed = cli(*args, "--out", killed, "--confidence", tmp_path / "killed_conf.tif")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert digest(killed) == digest(whole)
    assert digest(tmp_path / "killed_conf.tif") == digest(tmp_path / "whole_conf.tif")
    record = json.loads(killed.with_suffix(".json").read_text())
    assert record["execution"]["resumed_blocks"] == finished
    assert not parts.exists()
    # ... and the local run's pixels, block borders included.
    np.testing.assert_array_equal(pixels(killed), pixels(scene["out"]))
    np.testing.assert_array_equal(pixels(tmp_path / "killed_conf.tif"), pixels(scene["confidence"]))


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    ) as local:
        yield local


def dask_run(scene, out: Path, cluster, progress=None, **more):
    options = {
        **OPTIONS,
        "input": scene["input"],
        "out": str(out),
        "confidence": str(out.with_name(out.stem + "_conf.tif")),
        "executor": "dask",
        "scheduler": cluster.scheduler_address,
        **more,
    }
    return run_segment(options, progress=progress)


def test_dask_gives_the_local_pixels(scene, cluster, tmp_path):
    result = dask_run(scene, tmp_path / "dask.tif", cluster)
    np.testing.assert_array_equal(pixels(result.out), pixels(scene["out"]))
    np.testing.assert_array_equal(pixels(result.confidence), pixels(scene["confidence"]))
    record = json.loads(Path(result.sidecar).read_text())
    assert record["execution"]["executor"] == "dask" and record["execution"]["blocks"] == 12
    assert not parts_folder_for(tmp_path / "dask.tif").exists()


def test_a_worker_killed_mid_run_loses_nothing(scene, cluster, tmp_path):
    killed = []

    def kill_a_busy_worker(event: ProgressEvent) -> None:
        # The LocalCluster's scheduler lives in this process: who is busy, and each nanny's worker pid.
        if killed or not event.message.startswith("block"):
            return
        busy = {address for address, state in cluster.scheduler.workers.items() if state.processing}
        for nanny in cluster.workers.values():
            if nanny.worker_address in busy:
                os.kill(nanny.process.pid, signal.SIGKILL)
                killed.append(nanny.worker_address)
                return

    result = dask_run(scene, tmp_path / "survivor.tif", cluster, progress=kill_a_busy_worker)
    assert killed, "no worker was busy to be killed"
    np.testing.assert_array_equal(pixels(result.out), pixels(scene["out"]))
    np.testing.assert_array_equal(pixels(result.confidence), pixels(scene["confidence"]))


def test_a_block_that_keeps_failing_is_named(scene, cluster, tmp_path):
    out = tmp_path / "failing.tif"
    parts = parts_folder_for(out)

    def block_the_last_part(event: ProgressEvent) -> None:
        # A folder where the last block's record goes: its rename fails on every try.
        if event.message.startswith("block") and not (parts / "block-000011.json").exists():
            (parts / "block-000011.json" / "in-the-way").mkdir(parents=True, exist_ok=True)

    named = r"block 11 \(tile rows 2-2, columns 3-3; output pixels x 288-300, y 192-220\)"
    with pytest.raises(UserError, match=named) as error:
        dask_run(scene, out, cluster, progress=block_the_last_part, retries=1)
    assert "failed after 2 tries" in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, no parts left


def test_cancelling_a_dask_run_leaves_nothing(scene, cluster, tmp_path):
    from engine.errors import Cancelled
    from engine.pipeline.progress import CancelToken

    cancel = CancelToken()

    def cancel_after_a_block(event: ProgressEvent) -> None:
        if event.message.startswith("block"):
            cancel.cancel()

    options = {
        **OPTIONS,
        "input": scene["input"],
        "out": str(tmp_path / "cancelled.tif"),
        "executor": "dask",
        "scheduler": cluster.scheduler_address,
    }
    with pytest.raises(Cancelled):
        run_segment(options, progress=cancel_after_a_block, cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_plugins_worker_runs_a_cluster_run_unchanged(scene, tmp_path):
    """The JSON-lines worker (what QGIS talks to) serves a Dask run: progress per block, clean stdout."""
    from test_worker import WorkerProcess

    worker = WorkerProcess()
    try:
        args = {
            **OPTIONS,
            "input": scene["input"],
            "out": str(tmp_path / "w.tif"),
            "confidence": str(tmp_path / "w_conf.tif"),
            "executor": "dask",
            "scheduler": "local:2",
        }
        worker.send(
            {"id": "d1", "command": "segment", "args": {k: v for k, v in args.items() if v is not None}}
        )
        final, events = worker.until_final("d1", timeout=240)
        assert final["event"] == "result", final
        messages = [e["message"] for e in events if e["event"] == "progress"]
        assert "block 12/12 done" in messages and messages[-1].startswith("wrote")
        assert any("dashboard" in m for m in messages)
        worker.send({"command": "shutdown"})
        worker.process.wait(timeout=60)
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
    assert all(json.loads(line) for line in worker.raw)  # nothing but JSON on stdout
    np.testing.assert_array_equal(pixels(tmp_path / "w.tif"), pixels(scene["out"]))
    np.testing.assert_array_equal(pixels(tmp_path / "w_conf.tif"), pixels(scene["confidence"]))


@pytest.mark.parametrize("placement", ["geotransform", "gcps"])
def test_assembled_cog_keeps_placement_colours_and_names(scene, tmp_path, placement):
    """The parts' mosaic becomes a COG with the local run's georeferencing, colour table and names."""
    from placed_rasters import gcp_raster

    source = scene["input"] if placement == "geotransform" else gcp_raster(tmp_path / "gcp.tif", 300, 220)
    common = {**OPTIONS, "input": source}
    if placement == "gcps":
        common.pop("gsd")  # in pixel units here: the method's default
    local = run_segment({**common, "out": str(tmp_path / "local.tif")})
    parts = run_segment(
        {**common, "out": str(tmp_path / "parts.tif"), "resume": True, "output_format": "cog"}
    )
    a, b = gdal.Open(local.out), gdal.Open(parts.out)
    b.GetMetadata()  # loads the .aux.xml
    assert b.GetMetadata("IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    np.testing.assert_array_equal(a.ReadAsArray(), b.ReadAsArray())
    assert a.GetGeoTransform(can_return_null=True) == b.GetGeoTransform(can_return_null=True)
    assert a.GetProjection() == b.GetProjection()
    assert [(g.GCPX, g.GCPY, g.GCPPixel, g.GCPLine) for g in a.GetGCPs()] == [
        (g.GCPX, g.GCPY, g.GCPPixel, g.GCPLine) for g in b.GetGCPs()
    ]
    assert (len(a.GetGCPs()) > 0) == (placement == "gcps")
    band_a, band_b = a.GetRasterBand(1), b.GetRasterBand(1)
    assert (
        band_b.GetCategoryNames()
        == band_a.GetCategoryNames()
        == ["unclassified", "building", "road", "water"]
    )
    table_a, table_b = band_a.GetColorTable(), band_b.GetColorTable()
    assert [table_b.GetColorEntry(i) for i in range(4)] == [table_a.GetColorEntry(i) for i in range(4)]
    assert band_b.GetOverviewCount() >= 1
    band_a = band_b = table_a = table_b = None
