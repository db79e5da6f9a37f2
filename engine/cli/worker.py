"""``python -m engine worker``: a persistent engine process speaking JSON lines on stdin/stdout.

Protocol (one JSON object per line; stdout carries ONLY these lines, everything else goes to stderr):

Requests
  {"id": "r1", "command": "segment", "args": {...}}   args use the ``segment`` option names
                                                       (input, classes, vocabulary, out, confidence, bands,
                                                       bbox, bbox_crs, gsd, device, threshold, templates,
                                                       attention, clip, upsampler, dtype, random_weights,
                                                       seed, overwrite, warp, fidelity, method,
                                                       batch_size, tile_size; per method, the options
                                                       its spec declares, e.g. reseg-clip: sam,
                                                       schedule, sam_window, mask_cache,
                                                       sam_parameter_sets): engine.options.SegmentOptions
  {"id": "r2", "command": "estimate", "args": {...}}  sizes/tiles/crops and expected time, no model
  {"id": "r4", "command": "evaluate", "args": {...}}  accuracy of a class raster: args are the keywords
                                                       of engine.assess.evaluate_map (prediction,
                                                       reference, reference_field, mapping, ignore, bbox,
                                                       bbox_crs, report, csv, plot); result = the report
                                                       + "report" (same dict) + "files" (paths written)
  {"id": "r5", "command": "train", "args": {...}}    AerOSeg training: args use the ``train`` option names
                                                       (images, labels, label_field, classes, unseen, out,
                                                       architecture, steps, ...); result = the model's
                                                       metadata + "model" (the file written)
  {"id": "r3", "command": "info"}                      interpreter, versions, devices, GPU memory
  {"id": "r4", "command": "check_outputs", "args": {"inputs": [...], "outputs": {label: path}}}
                                                       refuses outputs over an input's files or each other
  {"command": "cancel", "id": "r1"}                    stop r1 (running or queued)
  {"command": "shutdown"}                              cancel what runs, then exit 0
Events
  {"id", "event": "progress", "fraction", "stage", "message"}
  {"id", "event": "log", "level", "message"}
  {"id", "event": "result", "result": {...}}
  {"id", "event": "error", "kind": "user" | "internal" | "cancelled", "message"}

Requests run one at a time in arrival order; stdin is read on a thread so a cancel arrives mid-run.
Loaded models stay cached between requests (keyed by CLIP/upsampler spec, seed, device, dtype). The
heap keeps a run's peak (engine.runtime.allocator) until the worker has been idle for ``IDLE_TRIM_SECONDS``:
back-to-back runs reuse its pages instead of faulting them in again, an idle worker holds no more than
it needs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import TextIO

from engine.cli.diagnostics import engine_report
from engine.cli.interrupts import Stopped, exit_status, stop_on_signals
from engine.cli.run_speed import estimate_time, remember_run
from engine.errors import Cancelled, UserError
from engine.runtime.allocator import release_free_memory

log = logging.getLogger("engine.worker")

#: Idle seconds after a segment request before the heap's free pages go back to the OS. Trimming after
#: every request made each following run fault its pages in again: ≈ 15 % of a lone SegEarth-OV tile in an
#: earlier measurement, 0–6 % (medians of 6 alternated runs, twice) on a noisier day.
IDLE_TRIM_SECONDS = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="INFO", help="level of log events sent to the client")


#: Longest request line read (a vocabulary of hundreds of classes is a few hundred KB); longer lines are
#: skipped unread and answered with an error, so a runaway client cannot fill the worker's memory.
MAX_REQUEST_BYTES = 32 * 2**20


def brief(value: object, limit: int = 120) -> str:
    """``repr``/``str`` of a client's value cut to ``limit`` characters (errors echo what was sent)."""
    text = str(value) if isinstance(value, Exception) else repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text):,} characters)"


def request_lines(stream) -> Iterator[str | ValueError]:
    """Lines of ``stream`` (text or its bytes buffer) as text; a ValueError in place of a line that is
    not UTF-8 or is longer than ``MAX_REQUEST_BYTES``."""
    source = getattr(stream, "buffer", stream)
    while True:
        line = source.readline(MAX_REQUEST_BYTES + 1)
        if not line:
            return
        newline = b"\n" if isinstance(line, bytes) else "\n"
        if len(line) > MAX_REQUEST_BYTES and not line.endswith(newline):
            while (rest := source.readline(2**20)) and not rest.endswith(newline):
                pass
            yield ValueError(f"a request line is longer than {MAX_REQUEST_BYTES // 2**20} MB")
            continue
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield ValueError(f"not UTF-8 text (byte {exc.start} of the line)")
                continue
        yield line


def check_outputs(args: dict) -> dict:
    """The ``check_outputs`` request: ``{"inputs": [path, ...], "outputs": {label: path or null}}``.

    For clients that write files of their own (the plugin's polygons and styles): the engine's one rule
    (engine.raster.output_paths) decides, so the plugin and the engine never disagree about a path.
    """
    from engine.raster.output_paths import ensure_outputs_safe

    inputs, outputs = args.get("inputs", []), args.get("outputs", {})
    if not isinstance(inputs, list) or not all(isinstance(p, str) for p in inputs):
        raise UserError('check_outputs: "inputs" must be a list of paths')
    if not isinstance(outputs, dict) or not all(isinstance(p, (str, type(None))) for p in outputs.values()):
        raise UserError('check_outputs: "outputs" must map labels to paths (or null)')
    ensure_outputs_safe(inputs, outputs)
    return {"ok": True}


class Channel:
    """Writes protocol lines (thread-safe); the only writer of the protocol stream."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def send(self, message: dict) -> None:
        line = json.dumps(message, ensure_ascii=False, default=str)
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


class EventLogHandler(logging.Handler):
    """Forwards engine log records to the client as ``log`` events of the current request."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self.channel = channel
        self.request_id: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.request_id is None:
            return
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must not kill a run
            message = str(record.msg)
        self.channel.send(
            {"id": self.request_id, "event": "log", "level": record.levelname.lower(), "message": message}
        )


class Worker:
    """Runs requests from ``requests`` (a queue filled by the reader thread) one at a time."""

    def __init__(self, channel: Channel) -> None:
        from engine.methods.registry import ModelCache

        self.channel = channel
        self.models = ModelCache()
        self.requests: queue.Queue = queue.Queue()
        self.tokens: dict[str, object] = {}
        self.tokens_lock = threading.Lock()
        self.log_handler = EventLogHandler(channel)
        self.warm_models: set[str] = set()  # run-speed keys whose models are loaded (engine.cli.run_speed)

    def token_for(self, request_id: str):
        from engine.pipeline.progress import CancelToken

        with self.tokens_lock:
            return self.tokens.setdefault(request_id, CancelToken())

    def read_requests(self, stream: TextIO) -> None:
        """Reader thread: parse lines; cancel/shutdown act at once, other requests are queued.

        Nothing a client sends can stop this thread: a line that is not UTF-8, not JSON, not an object
        or too long is answered with an error event and the next line is read.
        """
        for line in request_lines(stream):
            try:
                if isinstance(line, Exception):
                    raise line
                line = line.strip()
                if not line:
                    continue
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("a request must be a JSON object")
            except (ValueError, RecursionError) as exc:
                self.channel.send(
                    {"id": None, "event": "error", "kind": "user", "message": f"bad request: {brief(exc)}"}
                )
                continue
            command, request_id = message.get("command"), message.get("id")
            if command == "cancel":
                if request_id is not None:
                    self.token_for(str(request_id)).cancel()
                continue
            if command == "shutdown":
                with self.tokens_lock:
                    for token in self.tokens.values():
                        token.cancel()
                break
            if request_id is not None:
                self.token_for(str(request_id))
            self.requests.put(message)
        self.requests.put(None)  # end of input or shutdown

    def serve(self) -> None:
        untrimmed = False  # a segment request ran since the last trim
        while True:
            try:
                message = self.requests.get(timeout=IDLE_TRIM_SECONDS if untrimmed else None)
            except queue.Empty:
                release_free_memory()
                untrimmed = False
                continue
            if message is None:
                return
            self.handle(message)
            untrimmed = untrimmed or message.get("command") == "segment"

    def handle(self, message: dict) -> None:
        request_id = message.get("id")
        command = message.get("command")
        args = message.get("args") or {}
        key = str(request_id) if request_id is not None else None
        self.log_handler.request_id = key
        try:
            if not isinstance(args, dict):
                raise UserError('"args" must be a JSON object')
            if command == "info":
                result = engine_report()
            elif command == "estimate":
                result = self.estimate(args)
            elif command == "segment":
                result = self.segment(key, args)
            elif command == "evaluate":
                result = self.evaluate(key, args)
            elif command == "train":
                result = self.train(key, args)
            elif command == "check_outputs":
                result = check_outputs(args)
            elif command == "download":
                result = self.download(key, args)
            else:
                raise UserError(
                    f"unknown command {brief(command)}: use segment, estimate, evaluate, train, "
                    "check_outputs, download, info, cancel or shutdown"
                )
            self.channel.send({"id": request_id, "event": "result", "result": result})
        except UserError as exc:
            self.channel.send({"id": request_id, "event": "error", "kind": "user", "message": str(exc)})
        except Cancelled as exc:
            self.channel.send({"id": request_id, "event": "error", "kind": "cancelled", "message": str(exc)})
        except Exception as exc:  # report, keep serving: one bad request must not kill the worker
            traceback.print_exc(file=sys.stderr)
            self.channel.send(
                {
                    "id": request_id,
                    "event": "error",
                    "kind": "internal",
                    "message": f"{type(exc).__name__}: {exc}",
                }
            )
        finally:
            self.log_handler.request_id = None
            if key is not None:
                with self.tokens_lock:
                    self.tokens.pop(key, None)

    def estimate(self, args: dict) -> dict:
        from engine.options import SegmentOptions
        from engine.pipeline.segment import estimate

        options = SegmentOptions.from_mapping(args)
        spec = options.spec
        # With the vocabulary known, crops evaluated again on wide rasters are counted too.
        vocabulary = options.vocabulary_of() if options.classes or options.vocabulary else None
        queries = len(vocabulary.queries()) if vocabulary is not None else None
        settings = options.pipeline_settings()
        request = options.segment_request(vocabulary)
        crop_size, crop_stride = options.crop_window()  # a trained AerOSeg's own crop, not the spec's 384
        summary = estimate(request, crop_size, crop_stride, settings=settings, queries=queries)
        summary["time"] = estimate_time(args, summary["crop_evaluations"], self.warm_models)
        if spec.name == "segearth-ov3":  # its weights are a gated download: say so before a run needs them
            from engine.methods.registry import random_weights_requested
            from engine.methods.segearth_ov3.weights import missing_weights

            summary["missing_weights"] = missing_weights(
                options.extra, random_weights_requested(options.random_weights)
            )
        return summary

    def download(self, key: str | None, args: dict) -> dict:
        """``{"name": registry name, "token": hub token or absent}`` → the verified file in the cache, with
        progress events; cancellable (the partial file stays for a resumed download)."""
        from engine.models import registry
        from engine.models.download import download
        from engine.pipeline.progress import CancelToken

        token = self.token_for(key) if key is not None else CancelToken()
        entry = registry.get_entry(str(args.get("name") or ""))

        def progress(event: dict) -> None:
            token.check()
            done, total = event.get("bytes_done"), event.get("bytes_total")
            if event.get("stage") == "download" and total:
                message = f"downloading {entry.name}: {done / 1e6:.0f} of {total / 1e6:.0f} MB"
                self.channel.send(
                    {
                        "id": key,
                        "event": "progress",
                        "fraction": done / total,
                        "stage": "download",
                        "message": message,
                    }
                )

        located = download(entry, progress=progress, token=args.get("token") or None)
        return {
            "name": entry.name,
            "path": str(located.path),
            "sha256": located.sha256,
            "place": located.place,
        }

    def segment(self, key: str | None, args: dict) -> dict:
        from engine.pipeline.job import run_segment
        from engine.pipeline.progress import CancelToken

        token = self.token_for(key) if key is not None else CancelToken()

        def progress(event) -> None:
            self.channel.send({"id": key, "event": "progress", **event.to_json()})

        result = run_segment(args, models=self.models, progress=progress, cancel=token)
        remember_run(args, result.record, self.warm_models)  # this machine's speed, for later estimates
        return {
            "out": result.out,
            "confidence": result.confidence,
            "sidecar": result.sidecar,
            "record": result.record,
        }

    def evaluate(self, key: str | None, args: dict) -> dict:
        """Accuracy of a class raster (engine.assess.evaluate_map; ``args`` use its keyword names). The
        result is the report's keys, plus ``report`` (the same report) and ``files`` (paths written)."""
        from engine.assess.worker_request import run_evaluate_request
        from engine.pipeline.progress import CancelToken

        token = self.token_for(key) if key is not None else CancelToken()

        def progress(event) -> None:
            self.channel.send({"id": key, "event": "progress", **event.to_json()})

        return run_evaluate_request(args, progress=progress, cancel=token)

    def train(self, key: str | None, args: dict) -> dict:
        """Train AerOSeg (engine.cli.train: ``args`` use the train command's option names); the result
        is the model's metadata plus ``model`` (the file written)."""
        from engine.cli.train import run_train
        from engine.pipeline.progress import CancelToken

        token = self.token_for(key) if key is not None else CancelToken()

        def progress(event) -> None:
            self.channel.send({"id": key, "event": "progress", **event.to_json()})

        metadata = run_train(args, progress=progress, cancel=token)
        return {**metadata, "model": str(args.get("out"))}


def run(args: argparse.Namespace) -> int:
    # Keep stdout for the protocol only: anything else writing to fd 1 (print, C libraries) lands on
    # stderr instead, so a stray message can never corrupt the JSON stream.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    engine_logger = logging.getLogger("engine")
    engine_logger.setLevel(getattr(logging, str(args.log_level).upper(), logging.INFO))
    channel = Channel(protocol)
    worker = Worker(channel)
    engine_logger.addHandler(worker.log_handler)
    logging.captureWarnings(True)  # loaders warn (e.g. random weights) through warnings.warn
    logging.getLogger("py.warnings").addHandler(worker.log_handler)
    reader = threading.Thread(target=worker.read_requests, args=(sys.stdin,), daemon=True)
    reader.start()
    try:
        with stop_on_signals():  # SIGTERM, like Ctrl-C, unwinds a running request: its files are removed
            worker.serve()
    except KeyboardInterrupt as exc:
        why = f"stopped by {exc.name}" if isinstance(exc, Stopped) else "interrupted"
        print(f"{why}: the request in progress wrote nothing", file=sys.stderr)
        return exit_status(exc)
    finally:
        engine_logger.removeHandler(worker.log_handler)
        logging.getLogger("py.warnings").removeHandler(worker.log_handler)
        protocol.flush()
    return 0
