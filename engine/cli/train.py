"""``python -m engine train``: train AerOSeg on labelled imagery (a label raster or polygons).

The same keys serve the command line and the worker's ``train`` request (``run_train``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from engine.errors import UserError

log = logging.getLogger(__name__)

#: Seconds per 384-px crop and step of the full model on an idle 2-core CPU, float32 (forward and
#: backward took 71 s on a busy one): the lower bound printed before a CPU run of vit-b16 starts.
CPU_SECONDS_PER_CROP_FULL = 24.0
#: Keys of a train request that are TrainingSettings fields (the rest are TrainingRequest's).
SETTING_KEYS = (
    "steps",
    "batch_size",
    "crop",
    "learning_rate",
    "clip_lr_multiplier",
    "weight_decay",
    "gradient_clip",
    "sbp_weight",
    "ignore",
    "validation_fraction",
    "validate_every",
    "checkpoint_every",
    "flips",
    "colour_jitter",
    "seed",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--images", nargs="+", metavar="RASTER", help="georeferenced image(s) to learn from")
    data.add_argument(
        "--labels",
        metavar="FILE",
        help="label raster (1..K = the classes in order, 0 unlabelled, 255 ignore) or polygons (.gpkg, ...)",
    )
    data.add_argument(
        "--label-field", metavar="FIELD", help="polygon attribute holding the class name or number"
    )
    data.add_argument(
        "--classes",
        nargs="+",
        metavar="CLASS",
        help='classes in label order; synonyms after commas: "building,roof" road tree',
    )
    data.add_argument("--unseen", nargs="*", default=[], metavar="CLASS", help="class names not trained")
    data.add_argument("--gsd", type=float, metavar="METRES", help="resample the imagery to this GSD first")
    data.add_argument(
        "--dataset", metavar="NAME", help="a benchmark's train split instead of --images/--labels/--classes"
    )
    data.add_argument("--root", metavar="DIR", help="the benchmark dataset's folder (with --dataset)")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--out", metavar="MODEL.safetensors", help="the trained model (MODEL.aeroseg.json beside it)"
    )
    model.add_argument(
        "--architecture", default="vit-b16", help="vit-b16 (the paper's) or tiny (tests, demos)"
    )
    model.add_argument("--random-weights", action="store_true", help="random base weights (tests, demos)")
    model.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    model.add_argument("--resume", action="store_true", help="continue from MODEL.checkpoint.safetensors")
    model.add_argument("--quiet", action="store_true", help="no progress bar")
    train = parser.add_argument_group("training")
    train.add_argument("--steps", type=int, default=1000)
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--crop", type=int, help="crop edge in pixels (default: the architecture's input)")
    train.add_argument("--learning-rate", type=float, default=2e-4)
    train.add_argument("--clip-lr-multiplier", type=float, default=0.01)
    train.add_argument("--weight-decay", type=float, default=1e-4)
    train.add_argument("--gradient-clip", type=float, default=0.01)
    train.add_argument("--sbp-weight", type=float, default=0.1, help="weight of the back-projection loss")
    train.add_argument(
        "--ignore", choices=("exclude", "negative"), default="exclude", help="unlabelled pixels"
    )
    train.add_argument("--validation-fraction", type=float, default=0.1)
    train.add_argument("--validate-every", type=int, default=500)
    train.add_argument("--checkpoint-every", type=int, default=500)
    train.add_argument("--no-flips", dest="flips", action="store_false")
    train.add_argument("--colour-jitter", type=float, default=0.2)
    train.add_argument("--seed", type=int, default=0)


def _classes(values) -> list[list[str]]:
    from engine.vocabulary import parse_class_argument

    items = [values] if isinstance(values, str) else list(values or [])
    return [list(parse_class_argument(str(text), i).synonyms) for i, text in enumerate(items)]


def training_request(raw: Mapping[str, Any]):
    """A TrainingRequest from CLI arguments or a worker request's ``args`` (same keys)."""
    from engine.methods.aeroseg.training.loop import TrainingRequest
    from engine.methods.aeroseg.training.settings import TrainingSettings
    from engine.methods.registry import random_weights_requested
    from engine.runtime.device import resolve_device

    known = {f.name for f in fields(TrainingSettings)}
    settings = TrainingSettings(**{k: raw[k] for k in SETTING_KEYS if k in known and raw.get(k) is not None})
    dataset = raw.get("dataset")
    for key in ("out",) if dataset else ("images", "labels", "classes", "out"):
        if not raw.get(key):
            raise UserError(f"--{key} is required")
    if dataset and (raw.get("images") or raw.get("labels") or raw.get("classes")):
        raise UserError(
            "--dataset takes its images, labels and classes from the protocol: "
            "drop --images, --labels and --classes"
        )
    images = raw.get("images") or []
    images = [images] if isinstance(images, str) else list(images)
    return TrainingRequest(
        images=[str(p) for p in images],
        labels=str(raw.get("labels") or ""),
        classes=_classes(raw.get("classes")),
        dataset=str(dataset) if dataset else None,
        root=str(raw["root"]) if raw.get("root") else None,
        out=str(raw["out"]),
        label_field=raw.get("label_field"),
        unseen=[str(u) for u in raw.get("unseen") or []],
        architecture=str(raw.get("architecture") or "vit-b16"),
        settings=settings,
        gsd=raw.get("gsd"),
        device=resolve_device(str(raw.get("device") or "auto")),
        resume=bool(raw.get("resume")),
        random_weights=random_weights_requested(bool(raw.get("random_weights"))),
    )


def estimate_note(request) -> str | None:
    """A warning for a full-size model on the CPU: how long it would take."""
    if request.device != "cpu" or request.architecture != "vit-b16":
        return None
    hours = CPU_SECONDS_PER_CROP_FULL * request.settings.batch_size * request.settings.steps / 3600
    return (
        f"training vit-b16 on the CPU: at least {CPU_SECONDS_PER_CROP_FULL:.0f} s per crop on 2 cores, so "
        f"{request.settings.steps} steps of batch {request.settings.batch_size} take {hours:.0f} h or more; "
        "a GPU is advised (--device cuda), or try --architecture tiny --random-weights to see the loop"
    )


def run_train(raw: Mapping[str, Any], *, progress=None, cancel=None) -> dict:
    """Train; returns the model's metadata. Used by the CLI and the worker."""
    from engine.methods.aeroseg.training.loop import train
    from engine.pipeline.progress import ignore_progress

    request = training_request(raw)
    note = estimate_note(request)
    if note:
        log.warning(note)
    return train(request, progress=progress or ignore_progress, cancel=cancel)


def run(args: argparse.Namespace) -> int:
    from engine.cli.console import run_on_console

    def report(metadata: dict) -> None:
        validation = metadata.get("validation") or {}
        if validation.get("miou") is not None:
            print(
                f"validation mIoU {validation['miou']:.3f} on {validation['pixels']} held-out pixels",
                file=sys.stderr,
            )
        print(args.out)

    return run_on_console(
        lambda progress, cancel: run_train(vars(args), progress=progress, cancel=cancel),
        report,
        quiet=args.quiet,
        stopped="{why}: the model was not written; the last checkpoint (if any) resumes with --resume",
    )
