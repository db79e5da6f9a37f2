"""``train``: AerOSeg from images and labels to MODEL.safetensors (+ MODEL.aeroseg.json), with progress,
cancel, validation, checkpoints and resume."""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from engine.errors import Cancelled, UserError
from engine.methods.aeroseg.architecture import architecture
from engine.methods.aeroseg.back_projection import back_projection_loss
from engine.methods.aeroseg.backbones import build_base
from engine.methods.aeroseg.model_file import save_model
from engine.methods.aeroseg.training.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    run_fingerprint,
    save_checkpoint,
)
from engine.methods.aeroseg.training.labels import load_labelled_images
from engine.methods.aeroseg.training.loss import segmentation_loss
from engine.methods.aeroseg.training.sampling import CropSampler, validation_masks
from engine.methods.aeroseg.training.settings import TrainingSettings
from engine.methods.aeroseg.training.validation import validate
from engine.pipeline.progress import CancelToken, ProgressEvent, ignore_progress

log = logging.getLogger(__name__)

#: Patch size of every supported CLIP (ViT-B/16 and the tiny /16); crops are multiples of patch × window.
PATCH = 16


@dataclass
class TrainingRequest:
    images: list[str]
    labels: str
    classes: list[list[str]]  # each class: its name and synonyms (every one a query)
    out: str
    label_field: str | None = None
    unseen: list[str] = field(default_factory=list)
    architecture: str = "vit-b16"
    settings: TrainingSettings = field(default_factory=TrainingSettings)
    gsd: float | None = None
    device: str = "cpu"
    resume: bool = False
    random_weights: bool = False
    dataset: str | None = None  # a benchmark protocol's train split instead of images + labels
    root: str | None = None


def check_output(out: str, inputs: list[str]) -> Path:
    """The output path, refused early when it cannot be written (before any minute of training)."""
    path = Path(out)
    if path.suffix.lower() != ".safetensors":
        raise UserError(f"--out must end in .safetensors, got {out}")
    resolved = path.resolve()
    if any(resolved == Path(p).resolve() for p in inputs):
        raise UserError(f"--out {out} is one of the inputs: choose another file")
    folder = resolved.parent
    if not folder.is_dir():
        raise UserError(f"the output folder {folder} does not exist")
    try:  # a real attempt: permission bits say nothing under root or on a read-only mount
        handle, probe = tempfile.mkstemp(prefix=".aeroseg-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise UserError(
            f"cannot write {out}: the folder {folder} is not writable ({error.strerror}); "
            "choose another --out"
        ) from None
    return path


def learning_rate(base: float, step: int, steps: int) -> float:
    """Cosine schedule without warm-up: base at step 0, 0 at ``steps``."""
    return base * 0.5 * (1.0 + math.cos(math.pi * step / steps))


@dataclass
class TrainingData:
    """What a run learns from: its classes, a crop sampler, and images with held-out masks to validate on."""

    classes: list[list[str]]
    unseen: list[str]
    sampler: object  # CropSampler or DatasetSampler: batch(size), generator
    images: list  # LabelledImage, for validation and the pixel counts
    held_out: list  # (H, W) bool per image
    fingerprints: list[dict]
    labels: dict  # where the labels came from (and unmatched polygon values)


def prepare_data(request: TrainingRequest, crop: int) -> TrainingData:
    """The analyst's imagery and labels, or a benchmark's train split (``request.dataset``)."""
    import numpy as np

    settings = request.settings
    if request.dataset:
        from engine.methods.aeroseg.training.datasets import DatasetSampler, benchmark_data

        bench = benchmark_data(request.dataset, request.root, request.unseen)
        held_out = [np.ones(image.labels.shape, dtype=bool) for image in bench.validation]
        sampler = DatasetSampler(bench, crop, settings, settings.seed)
        labels = {"dataset": request.dataset, "root": str(Path(request.root).resolve())}
        return TrainingData(
            bench.classes, bench.unseen, sampler, bench.validation, held_out, bench.fingerprint(), labels
        )
    if not request.classes:
        raise UserError("no class given: --classes NAME[,SYNONYM] ...")
    images, report = load_labelled_images(
        request.images, request.labels, request.classes, label_field=request.label_field, gsd=request.gsd
    )
    held_out = validation_masks(
        images, settings.validation_fraction, settings.validation_block, settings.seed
    )
    if settings.validation_fraction > 0 and not any(mask.any() for mask in held_out):
        log.warning(
            "no labelled %d-px block could be held out for validation without taking a class's last "
            "training pixels: training without validation (label more areas to get validation figures)",
            settings.validation_block,
        )
    sampler = CropSampler(images, held_out, crop, settings, settings.seed)
    labels = {"source": str(Path(request.labels).resolve()), "field": request.label_field, **report}
    fingerprints = [image.fingerprint for image in images]
    return TrainingData(
        request.classes, list(request.unseen), sampler, images, held_out, fingerprints, labels
    )


def make_optimizer(model, settings: TrainingSettings) -> torch.optim.AdamW:
    """AdamW over CLIP's query/value projections (group 0, learning rate × the CLIP multiplier) and the
    head with the back-projection (group 1); nothing else is given to it."""
    return torch.optim.AdamW(
        [
            {"params": model.clip_parameters(), "lr": settings.learning_rate * settings.clip_lr_multiplier},
            {"params": model.head_parameters(), "lr": settings.learning_rate},
        ],
        weight_decay=settings.weight_decay,
    )


def _eta(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train(request: TrainingRequest, progress=ignore_progress, cancel: CancelToken | None = None) -> dict:
    """Train; returns the model's metadata (also in MODEL.aeroseg.json). Raises Cancelled when cancelled (the
    last checkpoint stays, for --resume)."""
    cancel = cancel or CancelToken()
    settings = request.settings
    arch = architecture(request.architecture)
    crop = settings.crop or arch.crop_size
    if crop % (PATCH * arch.window):
        raise UserError(f"--crop must be a multiple of {PATCH * arch.window} px for {arch.name}, got {crop}")
    out = check_output(request.out, [*request.images, request.labels] if not request.dataset else [])
    progress(ProgressEvent(0.0, "open", "reading imagery and labels"))
    data = prepare_data(request, crop)
    images, held_out, sampler, classes = data.images, data.held_out, data.sampler, data.classes
    names = [names[0] for names in classes]
    queries = [name for names in classes for name in names]
    device = torch.device(request.device)
    query_class = torch.tensor(
        [number for number, names in enumerate(classes, start=1) for _ in names], device=device
    )
    progress(ProgressEvent(0.01, "model", f"building {arch.name}"))
    model, base = build_base(arch, random_weights=request.random_weights, seed=settings.seed)
    model.to(device).train()
    optimizer = make_optimizer(model, settings)
    identity = {
        "architecture": arch.to_json(),
        "settings": {
            k: v for k, v in settings.to_json().items() if k not in ("validate_every", "checkpoint_every")
        },
        "classes": classes,
        "data": data.fingerprints,
        "base": base,
        "labels": data.labels,
    }
    fingerprint = run_fingerprint(identity)
    checkpoint = checkpoint_path(out)
    start, history = 0, []
    if request.resume:
        start, info = load_checkpoint(checkpoint, model, optimizer, sampler.generator, fingerprint)
        history = list(info.get("history", []))
        if start >= settings.steps:
            raise UserError(
                f"--resume: the checkpoint is at step {start} already; ask for more --steps than {start}"
            )
    parameters = model.clip_parameters() + model.head_parameters()
    autocast = device.type == "cuda" and settings.precision == "auto"
    use_sbp = settings.sbp_weight > 0
    validation = None
    began = time.monotonic()
    for step in range(start, settings.steps):
        cancel.check()
        for group, base_lr in zip(
            optimizer.param_groups,
            (settings.learning_rate * settings.clip_lr_multiplier, settings.learning_rate),
        ):
            group["lr"] = learning_rate(base_lr, step, settings.steps)
        rgb, labels = sampler.batch(settings.batch_size)
        rgb, labels = rgb.to(device), labels.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            text = model.text_features(queries)
            output = model(rgb, text, with_sbp=use_sbp)
            loss = segmentation_loss(output.logits, labels, query_class, settings.ignore)
            if use_sbp:
                loss = loss + settings.sbp_weight * back_projection_loss(
                    output.reconstruction.float(), output.sam_target.float()
                )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, settings.gradient_clip)
        optimizer.step()
        done = step + 1
        value = float(loss.detach())
        history.append([done, value])
        per_step = (time.monotonic() - began) / (done - start)
        progress(
            ProgressEvent(
                0.02 + 0.95 * done / settings.steps,
                "train",
                f"step {done}/{settings.steps} loss {value:.4f} "
                f"ETA {_eta(per_step * (settings.steps - done))}",
            )
        )
        if settings.validate_every and done % settings.validate_every == 0 and done < settings.steps:
            validation = _validate(model, images, held_out, names, queries, query_class, crop, device)
            if validation is not None:
                log.info("step %d: validation mIoU %s", done, validation["miou"])
        if settings.checkpoint_every and done % settings.checkpoint_every == 0 and done < settings.steps:
            save_checkpoint(
                checkpoint,
                model,
                optimizer,
                sampler.generator,
                done,
                {"fingerprint": fingerprint, "history": history},
            )
    progress(ProgressEvent(0.97, "validate", "validating on the held-out labels"))
    validation = _validate(model, images, held_out, names, queries, query_class, crop, device)
    metadata = {
        "name": out.stem,
        "method": "aeroseg",
        "classes": classes,
        "class_names": names,
        "queries": queries,
        "unseen": data.unseen,
        "architecture": arch.to_json(),
        "settings": settings.to_json(),
        "crop": crop,
        "gsd": request.gsd,
        "training_gsd": request.gsd or (_native_gsd(images[0]) if images and images[0].projection else None),
        "base": base,
        "data": data.fingerprints,
        "labels": data.labels,
        "labelled_pixels": _labelled_pixels(images, held_out, names),
        "validation": validation,
        "steps": settings.steps,
        "final_loss": history[-1][1] if history else None,
        "history": history[-min(len(history), 1000) :],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_fingerprint": fingerprint,
    }
    progress(ProgressEvent(0.99, "write", f"writing {out}"))
    save_model(out, model, metadata)
    checkpoint.unlink(missing_ok=True)
    progress(ProgressEvent(1.0, "done", f"trained {out.name}"))
    return metadata


def _native_gsd(image) -> float:
    """The imagery's pixel size in metres (the finer axis), as the model learnt it."""
    from engine.raster.grid import native_gsd

    height, width = image.labels.shape
    return float(min(native_gsd(image.geotransform, image.projection, width, height)))


def _validate(model, images, held_out, names, queries, query_class, crop, device):
    if not any(mask.any() for mask in held_out):
        return None
    with torch.no_grad():
        text = model.text_features(queries)
    return validate(model, images, held_out, names, text, query_class, crop, device)


def _labelled_pixels(images, held_out, names) -> dict:
    counts = {}
    for number, name in enumerate(names, start=1):
        train = sum(int(((img.labels == number) & ~mask).sum()) for img, mask in zip(images, held_out))
        held = sum(int(((img.labels == number) & mask).sum()) for img, mask in zip(images, held_out))
        counts[name] = {"training": train, "validation": held}
    return counts


__all__ = ["Cancelled", "TrainingRequest", "TrainingSettings", "train"]
