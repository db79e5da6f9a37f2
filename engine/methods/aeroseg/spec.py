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


def window_stride(window: int, crop_stride: int | None) -> int:
    """The sliding windows' stride: ``--crop-stride``, else ⅔ of the window (CAT-Seg's ⅓ overlap) [C]."""
    return int(crop_stride or window - window // 3)


def block_geometry(window: int, stride: int, global_view: bool) -> tuple[int, int]:
    """(size, stride) of what the pipeline hands the method, in working pixels.

    Without the global view: the model's windows themselves. With it: window-blocks of window + stride
    pixels (640 at 384 / 256, the size CAT-Seg resizes a test image to), each segmented as CAT-Seg
    segments a whole image: its 2 × 2 windows averaged, half-and-half with the block resized to one
    window (the global view). Blocks step by 2 × stride, so every block's windows lie on the one
    stride lattice of the global crop grid; like any crop they are placed on that grid, not per read
    tile, so the output stays independent of the tiling."""
    return (window + stride, 2 * stride) if global_view else (window, stride)


def trained_window(extra: Mapping[str, Any]) -> tuple[int, int] | None:
    """(crop, stride) in working pixels the trained model's method will use (its own window, a tiny
    model's 128 and not the paper's 384; window-blocks when the global view is on, the default)."""
    if not extra.get("model"):
        return None
    metadata = model_metadata(extra["model"])
    window = int(metadata.get("crop") or (metadata.get("architecture") or {}).get("crop_size") or 0)
    if window <= 0:
        return None
    stride = window_stride(window, extra.get("crop_stride"))
    return block_geometry(window, stride, extra.get("global_view", True) is not False)


def parse_on_off(value) -> bool:
    """``on`` / ``off`` (CLI) or a JSON boolean (worker requests)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("on", "true", "yes", "1"):
        return True
    if text in ("off", "false", "no", "0"):
        return False
    raise UserError(f"--global-view must be on or off, got {value!r}")


def speed_name(extra: Mapping[str, Any]) -> str:
    """What a trained model's time per window depends on besides the machine: its architecture and
    whether a window is a window-block with the global view, e.g. "tiny/global"."""
    architecture = (model_metadata(extra.get("model")).get("architecture") or {}).get("name", "?")
    view = "global" if parse_on_off(extra.get("global_view", True)) else "windows"
    return f"{architecture}/{view}"


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
        ExtraOption(
            "global_view",
            "global_view",
            "AerOSeg global view (CAT-Seg's inference): on (default) averages each block of window + stride"
            " pixels' sliding windows half-and-half with the block resized to one window; off: windows only",
            "on|off",
            parse_on_off,
        ),
    ),
    default_classes=trained_classes,
    gsd_from_extra=trained_gsd,
    window_from_extra=trained_window,
)
