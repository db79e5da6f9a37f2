"""``python -m engine segment INPUT --class ... --out OUT.tif``: segment a raster by a free-text vocabulary.

The option names here are the contract shared with the worker (``engine.cli.worker``), whose request
``args`` use the same names (``bbox_crs``, ``random_weights``, ...); ``run_segment`` serves both.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.errors import Cancelled, UserError

log = logging.getLogger("engine.segment")

# Option defaults, shared by the command line and worker requests.
DEFAULTS: dict = {
    "input": None,
    "classes": [],
    "vocabulary": None,  # file path (CLI) or the JSON form (worker: a list of class objects)
    "method": "segearth-ov",
    "out": None,
    "confidence": None,
    "bands": None,
    "bbox": None,
    "bbox_crs": None,
    "gsd": None,
    "device": "auto",
    "threshold": 0.1,
    "templates": None,
    "attention": None,
    "clip": None,
    "upsampler": None,
    "dtype": "auto",  # bf16 on CPUs with bf16 matrix units and on GPUs, else float32
    "random_weights": False,
    "seed": 0,
    "overwrite": False,
    "batch_size": None,
    "tile_size": None,
    # ReSeg-CLIP only (MethodOptions.extra, see engine.methods.reseg.factory):
    "sam": None,  # SAM weights: registry name or checkpoint file
    "schedule": None,  # per-block attention schedule text
    "sam_window": None,  # longest side of a SAM window, working pixels
    "mask_cache": None,  # folder of the on-disk SAM mask cache
    "sam_parameter_sets": None,  # JSON list of SAM parameter-set objects, or a .json file holding one
}

#: Option name → ``MethodOptions.extra`` key, for the method-specific options above.
EXTRA_OPTION_KEYS = {
    "sam": "sam",
    "schedule": "schedule",
    "sam_window": "sam_window",
    "mask_cache": "mask_cache_dir",
    "sam_parameter_sets": "sam_parameter_sets",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="raster to segment (any format GDAL reads)")
    parser.add_argument(
        "--class",
        dest="classes",
        action="append",
        default=[],
        metavar="NAME[,SYNONYM...]",
        help='one class per option; commas separate synonyms, e.g. --class "building,roof,house"',
    )
    parser.add_argument(
        "--vocabulary", metavar="FILE", help="classes from a .json file or a SegEarth-OV .txt file"
    )
    parser.add_argument("--method", default=DEFAULTS["method"], help="segearth-ov (default) or reseg-clip")
    parser.add_argument(
        "--out", required=True, metavar="OUT.tif", help="class raster to write (uint8 GeoTIFF)"
    )
    parser.add_argument(
        "--confidence", metavar="OUT_CONF.tif", help="also write the winning probability (float32)"
    )
    parser.add_argument(
        "--bands", metavar="R,G,B", help="bands used as red, green, blue (default: R/G/B or 1,2,3)"
    )
    parser.add_argument("--bbox", metavar="MINX,MINY,MAXX,MAXY", help="segment only this extent")
    parser.add_argument(
        "--bbox-crs", metavar="CRS", help="CRS of --bbox, e.g. EPSG:4326 (default: the raster's)"
    )
    parser.add_argument(
        "--gsd",
        type=float,
        metavar="METRES",
        help="working resolution fed to the model (default: native x 1000/448, SegEarth-OV's scale)",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument(
        "--threshold", type=float, default=DEFAULTS["threshold"], help="min probability (default 0.1)"
    )
    parser.add_argument("--templates", metavar="imagenet|remote-sensing|FILE", help="prompt templates")
    parser.add_argument(
        "--attention", metavar="MODE", help="last-block attention: segearth, clearclip, sclip, ..."
    )
    parser.add_argument("--clip", metavar="NAME|FILE", help="CLIP weights: registry name or checkpoint file")
    parser.add_argument("--upsampler", metavar="NAME|FILE|none", help="feature upsampler; none = bilinear")
    parser.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="model precision (default auto: bfloat16 where the CPU has bf16 matrix units or on a GPU, "
        "else float32; the upsampler stays float32)",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="seeded random weights (tests/benchmarks; output meaningless)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-weights")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--batch-size", type=int, help="crops per model call (default: fits device memory)")
    parser.add_argument(
        "--tile-size", type=int, metavar="PIXELS", help="working pixels per read tile (memory)"
    )
    reseg = parser.add_argument_group("ReSeg-CLIP (--method reseg-clip)")
    reseg.add_argument("--sam", metavar="NAME|FILE", help="SAM weights: registry name or checkpoint file")
    reseg.add_argument(
        "--schedule",
        metavar="TEXT",
        help="attention per vision block, e.g. '18*full,sam1,sam2,sam3,sam4,2*self' "
        "(default: the reference pattern scaled to the model's depth)",
    )
    reseg.add_argument(
        "--sam-window",
        type=int,
        metavar="PX",
        help="longest side of a SAM window in working pixels (default 896; at least the crop size)",
    )
    reseg.add_argument(
        "--mask-cache",
        metavar="DIR",
        help="keep SAM masks in this folder, so later runs on the same imagery skip SAM",
    )
    reseg.add_argument(
        "--sam-parameter-sets",
        metavar="JSON|FILE",
        help="SAM generator settings replacing the reference's four sets: a JSON list of objects "
        "(points_per_side, pred_iou_thresh, stability_score_thresh, min_mask_region_area, ...) or a file",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


@dataclass
class Job:
    """A segment request resolved from options: everything validated, nothing loaded yet."""

    options: dict
    vocabulary: object
    prepared: object
    device: str
    method_options: object


def resolve_options(raw: Mapping) -> dict:
    """Defaults + given options; unknown names are a user error (catches typos in worker requests)."""
    unknown = sorted(set(raw) - set(DEFAULTS) - {"quiet", "command", "func"})
    if unknown:
        raise UserError(f"unknown option(s): {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}")
    options = {**DEFAULTS, **{k: v for k, v in raw.items() if k in DEFAULTS and v is not None}}
    if not options["input"]:
        raise UserError("no input raster given")
    return options


def segment_request(options: dict):
    """The pipeline's SegmentRequest from resolved options (shared by segment and the worker's estimate)."""
    from engine.pipeline.segment import SegmentRequest

    bands = options["bands"]
    return SegmentRequest(
        input=str(options["input"]),
        out=str(options["out"]) if options.get("out") else None,
        confidence=str(options["confidence"]) if options.get("confidence") else None,
        bands=bands if isinstance(bands, (str, type(None))) else tuple(bands),
        bbox=options["bbox"],
        bbox_crs=options["bbox_crs"],
        gsd=float(options["gsd"]) if options["gsd"] is not None else None,
        threshold=float(options["threshold"]),
        overwrite=bool(options["overwrite"]),
    )


def vocabulary_of(options: dict):
    """The Vocabulary of resolved options: ``classes``, a ``vocabulary`` file (CLI) or its JSON (worker)."""
    from engine.vocabulary import build_vocabulary

    vocab_file, vocab_json = options["vocabulary"], None
    if vocab_file is not None and not isinstance(vocab_file, str):
        vocab_file, vocab_json = None, options["vocabulary"]
    classes = options["classes"]
    return build_vocabulary([classes] if isinstance(classes, str) else classes, vocab_file, vocab_json)


def prepare_job(raw: Mapping) -> Job:
    """Validate a request fully (vocabulary, raster, bands, bbox, GSD, outputs) before any model loads."""
    from engine.methods.registry import (
        METHODS,
        MethodOptions,
        default_crop_geometry,
        random_weights_requested,
    )
    from engine.pipeline.segment import PipelineSettings, prepare
    from engine.runtime.device import resolve_device

    options = resolve_options(raw)
    vocabulary = vocabulary_of(options)
    if options["method"] not in METHODS:
        raise UserError(f"unknown method {options['method']!r}: use one of {', '.join(sorted(METHODS))}")
    device = resolve_device(options["device"])
    request = segment_request(options)
    crop_size, crop_stride = default_crop_geometry(options["method"])
    prepared = prepare(request, crop_size, crop_stride, settings=pipeline_settings(options, PipelineSettings))
    dtype = options["dtype"] or "auto"
    method_options = MethodOptions(
        clip=options["clip"],
        upsampler=options["upsampler"],
        attention=options["attention"],
        templates=options["templates"],
        dtype=dtype,
        device=device,
        random_weights=random_weights_requested(options["random_weights"]),
        seed=int(options["seed"]),
        extra=method_extra(options),
    )
    return Job(options, vocabulary, prepared, device, method_options)


def method_extra(options: Mapping) -> dict:
    """``MethodOptions.extra`` from the method-specific options; refuses options the method lacks."""
    from engine.methods.registry import METHOD_EXTRA_OPTIONS

    given = {name: options[name] for name in EXTRA_OPTION_KEYS if options.get(name) is not None}
    accepted = METHOD_EXTRA_OPTIONS.get(options["method"], frozenset())
    refused = sorted(name for name in given if EXTRA_OPTION_KEYS[name] not in accepted)
    if refused:
        flags = ", ".join("--" + name.replace("_", "-") for name in refused)
        users = sorted(m for m, keys in METHOD_EXTRA_OPTIONS.items() if keys)
        raise UserError(f"{flags} only apply to --method {' or '.join(users)}, not {options['method']}")
    extra = {}
    for name, value in given.items():
        if name == "sam_window":
            value = _positive_int(value, "--sam-window")
        elif name == "sam_parameter_sets":
            value = parse_parameter_sets(value)
        elif name in ("sam", "schedule", "mask_cache"):
            value = str(value)
        extra[EXTRA_OPTION_KEYS[name]] = value
    return extra


def _positive_int(value, flag: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UserError(f"{flag} must be a whole number of pixels, got {value!r}") from None
    if number <= 0 or number != float(value):
        raise UserError(f"{flag} must be a positive whole number of pixels, got {value!r}")
    return number


def parse_parameter_sets(value) -> list[dict]:
    """SAM parameter sets from a JSON list of objects, its text, or a .json file holding it."""
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            path = Path(text)
            if not path.is_file():
                raise UserError(f"--sam-parameter-sets: {text} is neither a JSON list nor an existing file")
            text = path.read_text(encoding="utf-8")
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise UserError(f"--sam-parameter-sets is not valid JSON: {exc}") from None
    if not isinstance(value, list) or not value or not all(isinstance(item, dict) for item in value):
        raise UserError(
            "--sam-parameter-sets must be a non-empty JSON list of objects, e.g. "
            '[{"points_per_side": 4, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.5, '
            '"min_mask_region_area": 500}]'
        )
    return [dict(item) for item in value]


def pipeline_settings(options: Mapping, settings_type=None):
    from engine.pipeline.segment import PipelineSettings

    settings_type = settings_type or PipelineSettings
    extra = {}
    if options.get("batch_size") is not None:
        extra["batch_size"] = int(options["batch_size"])
    if options.get("tile_size") is not None:
        if int(options["tile_size"]) < 16:
            raise UserError(f"--tile-size must be at least 16 working pixels, got {options['tile_size']}")
        extra["tile_working"] = int(options["tile_size"])
    return settings_type(**extra)


def run_segment(raw: Mapping, *, models=None, progress=None, cancel=None, job: Job | None = None):
    """Validate, load the method (through ``models``, a ModelCache), segment. Returns a SegmentResult."""
    from engine.methods.registry import RANDOM_WEIGHTS_WARNING, ModelCache, create_method
    from engine.pipeline.progress import ProgressEvent, ignore_progress
    from engine.pipeline.segment import segment
    from engine.runtime.device import configure_determinism

    progress = progress or ignore_progress
    progress(ProgressEvent(0.0, "open", "checking the request"))
    job = job or prepare_job(raw)
    try:
        configure_determinism(job.device, job.method_options.seed)
        progress(ProgressEvent(0.01, "model", f"loading {job.options['method']}"))
        tic = time.perf_counter()
        method = create_method(job.options["method"], job.method_options, models or ModelCache())
        load_seconds = time.perf_counter() - tic
        record = {
            "timings_s": {"model_load": load_seconds},
            "method_options": job.method_options.to_json(),
            "random_weights": job.method_options.random_weights,
        }
        if job.method_options.random_weights:
            record["warning"] = RANDOM_WEIGHTS_WARNING
        return segment(
            job.prepared,
            job.vocabulary,
            method,
            settings=pipeline_settings(job.options),
            device=job.device,
            progress=progress,
            cancel=cancel,
            record=record,
        )
    finally:
        job.prepared.source.close()


def run(args: argparse.Namespace) -> int:
    from engine.cli.interrupts import Stopped, exit_status, stop_on_signals
    from engine.pipeline.progress import CancelToken, TerminalProgressBar, ignore_progress

    # The engine's warnings (random weights, no georeferencing, ...) always reach the user's terminal.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    engine_logger = logging.getLogger("engine")
    engine_logger.addHandler(handler)
    engine_logger.setLevel(logging.INFO)
    engine_logger.propagate = False
    raw = {k: v for k, v in vars(args).items() if k in DEFAULTS}
    progress = ignore_progress if args.quiet else TerminalProgressBar(sys.stderr)
    cancel = CancelToken()
    try:
        with stop_on_signals():  # SIGTERM too unwinds the run, so its temporary files are removed
            result = run_segment(raw, progress=progress, cancel=cancel)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt) as exc:
        why = f"stopped by {exc.name}" if isinstance(exc, Stopped) else "cancelled"
        print(f"{why}: nothing was written", file=sys.stderr)
        return exit_status(exc)
    finally:
        engine_logger.removeHandler(handler)
        engine_logger.propagate = True
    print(result.out)
    if result.confidence:
        print(result.confidence)
    print(result.sidecar)
    return 0
