"""AerOSeg's defaults and options (no torch); the method is engine.methods.aeroseg.method, built by
``factory``. A trained model's classes are read from MODEL.aeroseg.json beside it (torch-free)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.methods.spec import ExtraOption, MethodSpec, ThresholdRule, positive_pixels


def model_metadata(model: str | None) -> dict:
    """MODEL.aeroseg.json of a trained model (written beside MODEL.safetensors by ``train``)."""
    if not model:
        raise UserError(
            "--method aeroseg needs --model MODEL.safetensors (train one with: python -m engine train)"
        )
    path = Path(model)
    if not path.is_file():
        raise UserError(f"AerOSeg model not found: {model}")
    sidecar = path.with_suffix(".aeroseg.json")  # not MODEL.json: a map's sidecar could take that name
    if not sidecar.is_file():
        raise UserError(f"{sidecar} (the model's description, written by train beside the model) is missing")
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {sidecar}: {error}") from None


def trained_classes(extra: Mapping[str, Any]) -> tuple[str, ...]:
    """The model's classes as ``--class`` arguments ("name,synonym"), then its unseen names."""
    metadata = model_metadata(extra.get("model"))
    classes = tuple(",".join(names) for names in metadata.get("classes", []))
    return classes + tuple(metadata.get("unseen", []))


def trained_gsd(extra: Mapping[str, Any]) -> float | None:
    """The metres per pixel the model was trained at: segmenting defaults to it (None: unknown)."""
    if not extra.get("model"):
        return None
    value = model_metadata(extra["model"]).get("training_gsd")
    return float(value) if value else None


def trained_window(extra: Mapping[str, Any]) -> tuple[int, int] | None:
    """(crop, stride) in working pixels of the trained model: its own crop (a tiny model's 128, not the
    paper's 384) and ``--crop-stride``, else ⅔ of the crop (CAT-Seg's ⅓ overlap), as the method uses."""
    if not extra.get("model"):
        return None
    metadata = model_metadata(extra["model"])
    crop = int(metadata.get("crop") or (metadata.get("architecture") or {}).get("crop_size") or 0)
    if crop <= 0:
        return None
    return crop, int(extra.get("crop_stride") or crop - crop // 3)


def parse_model(value) -> str:
    path = Path(str(value)).expanduser()
    if path.suffix.lower() != ".safetensors":
        raise UserError(f"--model must be a .safetensors file written by train, got {value}")
    return str(path)


AEROSEG = MethodSpec(
    name="aeroseg",
    label="AerOSeg (trained on your labels)",
    factory="engine.methods.aeroseg.factory:create_aeroseg",
    crop_size=384,
    crop_stride=256,
    gsd_factor=1.0,
    gsd_rule="the GSD the model was trained at (recorded in the model), else native",
    threshold=ThresholdRule(
        "score",
        0.0,
        "minimum probability of the winning class (the model's per-class sigmoid); 0 labels every pixel",
    ),
    logit_scale=1.0,
    templates="AerOSeg's four remote-sensing prompts, fixed by the trained model",
    extra=(
        ExtraOption(
            "model",
            "model",
            "trained AerOSeg model (MODEL.safetensors written by train)",
            "FILE",
            parse_model,
        ),
        ExtraOption(
            "crop_stride",
            "crop_stride",
            "AerOSeg window stride in working pixels (default: ⅔ of the model's window)",
            "PIXELS",
            positive_pixels("--crop-stride"),
        ),
    ),
    default_classes=trained_classes,
    gsd_from_extra=trained_gsd,
    window_from_extra=trained_window,
)
