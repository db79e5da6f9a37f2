"""``python -m engine worker``: JSON lines protocol, model cache, cancellation mid-run, clean stdout."""

from __future__ import annotations

import io
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from osgeo import gdal
from raster_files import random_raster

gdal.UseExceptions()
ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "clip": "RSOVSeg-Tiny-ViT-16",
    "upsampler": "none",
    "random_weights": True,
    "templates": "remote-sensing",
}


class WorkerProcess:
    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "RS_OVSEG_RANDOM_WEIGHTS"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine", "worker"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue = queue.Queue()
        self.raw: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.raw.append(line)
            self.lines.put(json.loads(line))  # every stdout line must be JSON
        self.lines.put(None)

    def send(self, message: dict) -> None:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def until_final(self, request_id: str, on_event=None, timeout=120) -> tuple[dict, list[dict]]:
        events = []
        while True:
            event = self.lines.get(timeout=timeout)
            assert event is not None, "worker exited: " + "".join(self.stderr[-20:])
            assert event["id"] == request_id
            events.append(event)
            if on_event:
                on_event(event)
            if event["event"] in ("result", "error"):
                return event, events


@pytest.fixture()
def worker():
    process = WorkerProcess()
    yield process
    if process.process.poll() is None:
        process.send({"command": "shutdown"})
        try:
            process.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.process.kill()


def test_protocol_round_trip(worker, tmp_path):
    src = random_raster(tmp_path / "in.tif", 120, 120)
    worker.send({"id": "i1", "command": "info"})
    final, _ = worker.until_final("i1")
    assert final["event"] == "result"
    assert final["result"]["engine_version"] and final["result"]["python"]
    assert "cuda_available" in final["result"]

    worker.send({"id": "e1", "command": "estimate", "args": {"input": src, "gsd": 1.0}})
    final, _ = worker.until_final("e1")
    assert final["result"]["working_size"] == [120, 120] and final["result"]["crops"] == 1

    args = {"input": src, "classes": ["building,roof", "road"], "out": str(tmp_path / "o.tif"), **TINY}
    worker.send({"id": "s1", "command": "segment", "args": args})
    final, events = worker.until_final("s1")
    assert final["event"] == "result", final
    assert final["result"]["out"] == str(tmp_path / "o.tif")
    assert final["result"]["record"]["queries"] == ["building", "roof", "road"]
    assert Path(final["result"]["sidecar"]).exists()
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["fraction"] == 1.0
    assert {"fraction", "stage", "message"} <= set(progress[0])
    logs = [e for e in events if e["event"] == "log"]
    assert any("RANDOM WEIGHTS" in e["message"] and e["level"] == "warning" for e in logs)

    # the same request again: user error (output exists), then the JSON vocabulary form, model cached
    worker.send({"id": "s2", "command": "segment", "args": args})
    final, _ = worker.until_final("s2")
    assert final["event"] == "error" and final["kind"] == "user" and "already exists" in final["message"]
    vocabulary = [{"name": "field", "synonyms": ["meadow"], "colour": [0, 200, 0]}]
    args2 = {**args, "classes": [], "vocabulary": vocabulary, "out": str(tmp_path / "o2.tif")}
    worker.send({"id": "s3", "command": "segment", "args": args2})
    final, _ = worker.until_final("s3")
    assert final["event"] == "result" and final["result"]["record"]["queries"] == ["field", "meadow"]
    assert final["result"]["record"]["timings_s"]["model_load"] < 0.5  # cached

    worker.send({"id": "b1", "command": "segment", "args": {**args, "colour": 3}})
    final, _ = worker.until_final("b1")
    assert final["kind"] == "user" and "unknown option" in final["message"]
    worker.send({"id": "b2", "command": "fly"})
    assert worker.until_final("b2")[0]["kind"] == "user"

    worker.send({"command": "shutdown"})
    assert worker.process.wait(timeout=30) == 0
    assert all(json.loads(line) for line in worker.raw)


def test_cancel_mid_run_leaves_nothing(worker, tmp_path):
    src = random_raster(tmp_path / "in.tif", 400, 400)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = {
        "input": src,
        "classes": ["a", "b"],
        "out": str(out_dir / "o.tif"),
        "confidence": str(out_dir / "c.tif"),
        "gsd": 1.0,
        "batch_size": 1,
        "tile_size": 64,
        **TINY,
    }
    worker.send({"id": "c1", "command": "segment", "args": args})
    sent = []

    def cancel_on_inference(event):
        if event["event"] == "progress" and event["stage"] == "inference" and not sent:
            worker.send({"command": "cancel", "id": "c1"})
            sent.append(event["fraction"])

    final, _ = worker.until_final("c1", cancel_on_inference)
    assert final["event"] == "error" and final["kind"] == "cancelled", final
    assert sent and sent[0] < 0.5
    assert list(out_dir.iterdir()) == []
    # the worker keeps serving after a cancellation
    worker.send({"id": "i2", "command": "info"})
    assert worker.until_final("i2")[0]["event"] == "result"


def test_heap_is_trimmed_once_the_worker_is_idle_not_between_queued_runs(monkeypatch):
    import engine.cli.worker as worker_module

    events = []
    monkeypatch.setattr(worker_module, "IDLE_TRIM_SECONDS", 0.2)
    monkeypatch.setattr(worker_module, "release_free_memory", lambda: events.append("trim") or True)
    monkeypatch.setattr(
        worker_module.Worker, "handle", lambda self, message: events.append(message["command"])
    )
    served = worker_module.Worker(worker_module.Channel(io.StringIO()))
    for command in ("estimate", "segment", "segment"):
        served.requests.put({"id": command, "command": command})
    serving = threading.Thread(target=served.serve)
    serving.start()
    # Queued runs follow each other without a trim; the trim comes once the queue stays empty.
    for _ in range(100):
        if "trim" in events:
            break
        time.sleep(0.05)
    served.requests.put({"id": "later", "command": "estimate"})  # no segment since the trim: no second one
    time.sleep(0.6)
    served.requests.put(None)
    serving.join(timeout=10)
    assert events == ["estimate", "segment", "segment", "trim", "estimate"]


def test_estimate_with_the_vocabulary_counts_windows_a_wide_raster_evaluates_twice(tmp_path, monkeypatch):
    import functools

    import engine.cli.worker as worker_module
    import engine.pipeline.segment
    from engine.options import SegmentOptions
    from engine.pipeline.crop_logits import count_crop_evaluations
    from engine.pipeline.segment import prepare

    # 6000 working px wide with 60 queries: the logits kept for the next tile row exceed the memory
    # budget. By default the rest go to a temporary file (each window once); without that file the
    # next row evaluates them again, and the estimate has to say so.
    src = random_raster(tmp_path / "wide.tif", 6000, 2400)
    classes = [f"class{i},synonym{i}a,synonym{i}b" for i in range(20)]
    served = worker_module.Worker(worker_module.Channel(io.StringIO()))
    spilled = served.estimate({"input": src, "gsd": 1.0, "classes": classes})
    assert spilled["crop_evaluations"] == spilled["crops"]
    no_file = functools.partial(engine.pipeline.segment.PipelineSettings, kept_logits_spill_budget=0)
    monkeypatch.setattr(engine.pipeline.segment, "PipelineSettings", no_file)
    plain = served.estimate({"input": src, "gsd": 1.0})
    told = served.estimate({"input": src, "gsd": 1.0, "classes": classes})
    assert plain["crop_evaluations"] == plain["crops"]  # each window once: the old count
    assert told["crop_evaluations"] > told["crops"]  # windows of the tile-row borders, twice
    options = SegmentOptions.from_mapping({"input": src, "gsd": 1.0, "classes": classes})
    settings = options.pipeline_settings()
    prepared = prepare(options.segment_request(), settings=settings, check_outputs=False)
    prepared.source.close()
    counted = count_crop_evaluations(prepared.plan, settings.kept_logits_budget, 60, 0)
    assert told["crop_evaluations"] == counted
