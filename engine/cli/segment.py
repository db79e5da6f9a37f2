"""``python -m engine segment INPUT --class ... --out OUT.tif``: segment a raster by a free-text vocabulary.

The option names here are the contract shared with the worker (``engine.cli.worker``), whose request
``args`` use the same names (``bbox_crs``, ``random_weights``, ...); ``run_segment`` serves both.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

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
    "dtype": None,  # float32 on CPU; bfloat16 on a GPU
    "random_weights": False,
    "seed": 0,
    "overwrite": False,
    "batch_size": None,
    "tile_size": None,
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
    parser.add_argument(
        "--method", default=DEFAULTS["method"], help="segmentation method (default segearth-ov)"
    )
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
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="model precision")
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


def prepare_job(raw: Mapping) -> Job:
    """Validate a request fully (vocabulary, raster, bands, bbox, GSD, outputs) before any model loads."""
    from engine.device import resolve_device
    from engine.methods.registry import METHODS, MethodOptions, random_weights_requested
    from engine.pipeline import PipelineSettings, SegmentRequest, prepare
    from engine.vocabulary import build_vocabulary

    options = resolve_options(raw)
    vocab_file, vocab_json = options["vocabulary"], None
    if vocab_file is not None and not isinstance(vocab_file, str):
        vocab_file, vocab_json = None, options["vocabulary"]
    classes = options["classes"]
    vocabulary = build_vocabulary([classes] if isinstance(classes, str) else classes, vocab_file, vocab_json)
    if options["method"] not in METHODS:
        raise UserError(f"unknown method {options['method']!r}: use one of {', '.join(sorted(METHODS))}")
    device = resolve_device(options["device"])
    request = SegmentRequest(
        input=str(options["input"]),
        out=str(options["out"]) if options["out"] else None,
        confidence=str(options["confidence"]) if options["confidence"] else None,
        bands=options["bands"]
        if isinstance(options["bands"], (str, type(None)))
        else tuple(options["bands"]),
        bbox=options["bbox"],
        bbox_crs=options["bbox_crs"],
        gsd=float(options["gsd"]) if options["gsd"] is not None else None,
        threshold=float(options["threshold"]),
        overwrite=bool(options["overwrite"]),
    )
    prepared = prepare(request, settings=pipeline_settings(options, PipelineSettings))
    dtype = options["dtype"] or ("float32" if device == "cpu" else "bfloat16")
    method_options = MethodOptions(
        clip=options["clip"],
        upsampler=options["upsampler"],
        attention=options["attention"],
        templates=options["templates"],
        dtype=dtype,
        device=device,
        random_weights=random_weights_requested(options["random_weights"]),
        seed=int(options["seed"]),
    )
    return Job(options, vocabulary, prepared, device, method_options)


def pipeline_settings(options: Mapping, settings_type=None):
    from engine.pipeline import PipelineSettings

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
    from engine.device import configure_determinism
    from engine.methods.registry import RANDOM_WEIGHTS_WARNING, ModelCache, create_method
    from engine.pipeline import segment
    from engine.progress import ProgressEvent, ignore_progress

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
    from engine.progress import CancelToken, TerminalProgressBar, ignore_progress

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
        result = run_segment(raw, progress=progress, cancel=cancel)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print("cancelled: nothing was written", file=sys.stderr)
        return 130
    finally:
        engine_logger.removeHandler(handler)
        engine_logger.propagate = True
    print(result.out)
    if result.confidence:
        print(result.confidence)
    print(result.sidecar)
    return 0
