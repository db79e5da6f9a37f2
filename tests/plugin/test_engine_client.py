"""The engine client against a stand-in worker: events, results, errors, cancel, death and restart."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from fixtures_fake_engine import make_fake_engine

from rs_ovseg_qgis.core.engine_client import (
    EngineCancelledError,
    EngineClient,
    EngineCommand,
    EngineDiedError,
    EngineError,
)


@pytest.fixture
def client(tmp_path):
    command = EngineCommand(python=Path(sys.executable), engine_dir=make_fake_engine(tmp_path))
    logged: list[tuple[str, str]] = []
    engine = EngineClient(command, log=lambda level, message: logged.append((level, message)))
    engine.logged = logged
    yield engine
    engine.stop()


def test_command_is_an_argument_list_with_the_engine_first_on_pythonpath(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    command = EngineCommand(python=Path("/x/python"), engine_dir=tmp_path / "engine")
    assert command.argv() == ["/x/python", "-u", "-m", "engine", "worker"]
    assert command.env()["PYTHONPATH"].split(":") == [str(tmp_path), "/elsewhere"]


def test_segment_streams_progress_then_returns_the_result(client):
    events = []
    result = client.request("segment", {"out": "/tmp/x.tif", "steps": 4}, on_event=events.append)
    assert result["out"] == "/tmp/x.tif"
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == [0.0, 0.25, 0.5, 0.75]
    assert any(e["event"] == "log" and e["level"] == "warning" for e in events)


def test_the_worker_persists_between_requests_and_serves_threads(client):
    first = client.request("info")["pid"]
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(client.request("info")["pid"])) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [first] * 3 and client.starts == 1


def test_an_engine_error_carries_its_kind_and_message(client):
    with pytest.raises(EngineError) as raised:
        client.request("nonsense")
    assert raised.value.kind == "user" and "unknown command nonsense" in str(raised.value)


def test_cancel_tells_the_engine_and_raises_cancelled(client):
    seen = []
    with pytest.raises(EngineCancelledError):
        client.request(
            "segment",
            {"steps": 500, "delay": 0.01},
            on_event=seen.append,
            is_cancelled=lambda: len(seen) >= 2,
        )
    # The worker survives a cancel and serves the next request.
    assert client.request("info")["pid"] == client.pid


def test_a_dead_worker_is_reported_with_its_last_words_and_restarted(client):
    first = client.request("info")["pid"]
    with pytest.raises(EngineDiedError) as died:
        client.request("crash")
    assert "code 7" in str(died.value) and "out of memory" in str(died.value)
    second = client.request("info")["pid"]
    assert second != first and client.starts == 2
    assert "out of memory" in client.last_exit_reason
    assert any(level == "warning" and "restarted" in message for level, message in client.logged)


def test_stop_ends_the_worker(client):
    client.request("info")
    process = client._process
    client.stop()
    assert process.poll() is not None and not client.is_running()


def test_a_missing_interpreter_is_a_user_error(tmp_path):
    engine = EngineClient(EngineCommand(python=tmp_path / "no-python", engine_dir=tmp_path / "engine"))
    with pytest.raises(EngineError) as raised:
        engine.request("info")
    assert raised.value.kind == "user" and "Set up engine" in str(raised.value)
