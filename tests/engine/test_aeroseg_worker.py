"""The worker's ``train`` request: progress events with loss and ETA, the model's metadata as result,
and cancel mid-run leaving no model (the plugin's Processing algorithm drives exactly this)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.aeroseg_data import KOELN, patch_vrt, write_polygons

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not KOELN.is_file(), reason="the Köln tile is not in /work/shared/data")


def train_args(folder: Path, steps: int) -> dict:
    return {
        "images": [patch_vrt(folder)],
        "labels": write_polygons(folder / "labels.gpkg"),
        "label_field": "class",
        "classes": ["solar panel", "field"],
        "out": str(folder / "model.safetensors"),
        "architecture": "tiny",
        "random_weights": True,
        "steps": steps,
        "batch_size": 1,
        "checkpoint_every": 1,
    }


def run_worker(requests: list[dict], cancel_on_train_event: str | None = None) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "engine", "worker"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    for request in requests:
        worker.stdin.write(json.dumps(request) + "\n")
    worker.stdin.flush()
    events = []
    for line in worker.stdout:
        event = json.loads(line)
        events.append(event)
        if cancel_on_train_event and event.get("stage") == "train":
            worker.stdin.write(json.dumps({"command": "cancel", "id": cancel_on_train_event}) + "\n")
            worker.stdin.flush()
            cancel_on_train_event = None
        if event.get("event") in ("result", "error"):
            break
    worker.stdin.write(json.dumps({"command": "shutdown"}) + "\n")
    worker.stdin.close()
    worker.wait(timeout=60)
    return events


def test_train_request_reports_progress_and_returns_the_metadata(tmp_path):
    events = run_worker([{"id": "t1", "command": "train", "args": train_args(tmp_path, 3)}])
    final = events[-1]
    assert final["event"] == "result", final
    assert final["result"]["model"] == str(tmp_path / "model.safetensors")
    assert final["result"]["class_names"] == ["solar panel", "field"]
    steps = [e["message"] for e in events if e.get("stage") == "train"]
    assert len(steps) == 3 and all("loss" in m and "ETA" in m for m in steps)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "model.aeroseg.json").is_file()


def test_train_request_cancelled_mid_run_writes_no_model(tmp_path):
    events = run_worker(
        [{"id": "t2", "command": "train", "args": train_args(tmp_path, 200)}], cancel_on_train_event="t2"
    )
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "cancelled"
    assert not (tmp_path / "model.safetensors").exists()
    assert (tmp_path / "model.checkpoint.safetensors").is_file()  # resumable


def test_bad_train_request_is_a_user_error(tmp_path):
    args = {**train_args(tmp_path, 3), "classes": ["solar panel", "field", "tree"]}
    events = run_worker([{"id": "t3", "command": "train", "args": args}])
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "user"
    assert "tree" in events[-1]["message"]
