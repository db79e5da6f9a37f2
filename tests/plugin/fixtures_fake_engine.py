"""A stand-in ``engine`` package speaking the worker protocol, for engine-client tests.

``make_fake_engine(tmp_path)`` writes ``tmp_path/engine/__main__.py``; an EngineCommand whose
``engine_dir`` is ``tmp_path/engine`` then starts it with ``python -m engine worker``. Requests:
``segment`` (``steps`` progress events ``delay`` seconds apart, honours cancel), ``crash`` (writes to
stderr and exits with code 7), ``info`` (its pid).
"""

from __future__ import annotations

from pathlib import Path

FAKE_MAIN = r"""
import json, os, sys, threading, time

cancelled = set()
lock = threading.Lock()

def emit(message):
    with lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

def segment(request_id, args):
    steps, delay = int(args.get("steps", 3)), float(args.get("delay", 0.01))
    for step in range(steps):
        if request_id in cancelled:
            emit({"id": request_id, "event": "error", "kind": "cancelled", "message": "cancelled"})
            return
        emit({"id": request_id, "event": "progress", "fraction": step / steps, "stage": "inference",
              "message": f"window {step + 1} of {steps}"})
        time.sleep(delay)
    emit({"id": request_id, "event": "log", "level": "warning", "message": "random weights"})
    emit({"id": request_id, "event": "result", "result": {"out": args.get("out"), "pid": os.getpid()}})

for line in sys.stdin:
    message = json.loads(line)
    command, request_id = message.get("command"), message.get("id")
    if command == "shutdown":
        break
    if command == "cancel":
        cancelled.add(request_id)
    elif command == "segment":
        threading.Thread(target=segment, args=(request_id, message.get("args") or {})).start()
    elif command == "info":
        emit({"id": request_id, "event": "result", "result": {"pid": os.getpid()}})
    elif command == "crash":
        sys.stderr.write("fatal: out of memory in the fake engine\n")
        sys.stderr.flush()
        os._exit(7)
    else:
        emit({"id": request_id, "event": "error", "kind": "user", "message": f"unknown command {command}"})
"""


def make_fake_engine(root: Path) -> Path:
    package = root / "engine"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_MAIN)
    return package
