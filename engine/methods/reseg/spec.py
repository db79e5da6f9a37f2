"""ReSeg-CLIP's defaults, own options and reference mode (no torch); the method is
engine.methods.reseg_clip, built by engine.methods.reseg.factory.

Defaults are the reference's (aemrhb/ReSeg-CLIP ``config.yml``, ``infernce.py``) except the SAM window,
a speed choice that ``--fidelity reference`` undoes; resources/docs/method-defaults.md lists them.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import UserError
from engine.methods.spec import ExtraOption, MethodSpec, ThresholdRule, positive_pixels

#: The reference tiles the image in 224-px crops without overlap and runs SAM on each crop.
REFERENCE_TILE_PX = 224
#: SAM windows of this many working pixels (4 × 4 reference tiles, under SAM's 1024-px input).
FAST_SAM_WINDOW_PX = 896


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


RESEG_CLIP = MethodSpec(
    name="reseg-clip",
    label="ReSeg-CLIP (CLIP + SAM masks, slower)",
    factory="engine.methods.reseg.factory:create_reseg_clip",
    crop_size=REFERENCE_TILE_PX,
    crop_stride=REFERENCE_TILE_PX,
    gsd_factor=1.0,
    gsd_rule="native GSD (the reference tiles the image at its own resolution)",
    threshold=ThresholdRule(
        "margin",
        0.0,
        "minimum cosine margin of the winning class over the runner-up (raw cosines, e.g. 0.01); "
        "0 = none, as in the reference",
    ),
    logit_scale=1.0,
    templates='one template, "Aerial photo of a {} in the city"',
    extra=(
        ExtraOption("sam", "sam", "SAM weights: registry name or checkpoint file", "NAME|FILE"),
        ExtraOption(
            "schedule",
            "schedule",
            "attention per vision block, e.g. '18*full,sam1,sam2,sam3,sam4,2*self' "
            "(default: the reference pattern scaled to the model's depth)",
            "TEXT",
        ),
        ExtraOption(
            "sam_window",
            "sam_window",
            f"longest side of a SAM window in working pixels (default {FAST_SAM_WINDOW_PX}; the "
            f"reference: {REFERENCE_TILE_PX}, one crop; at least the crop size)",
            "PX",
            positive_pixels("--sam-window"),
        ),
        ExtraOption(
            "mask_cache",
            "mask_cache_dir",
            "keep SAM masks in this folder, so later runs on the same imagery skip SAM",
            "DIR",
        ),
        ExtraOption(
            "sam_parameter_sets",
            "sam_parameter_sets",
            "SAM generator settings replacing the reference's four sets: a JSON list of objects "
            "(points_per_side, pred_iou_thresh, stability_score_thresh, min_mask_region_area, ...) or a file",
            "JSON|FILE",
            parse_parameter_sets,
        ),
    ),
    reference={"sam_window": REFERENCE_TILE_PX, "crop_edge": "pad"},
    reference_notes=(
        "SAM runs on each 224-px crop (--sam-window 224) instead of 896-px windows",
        "the last crop of a row or column is padded with black at the raster edge, as the reference "
        "pads it, instead of being shifted back inside the raster",
        "crops do not overlap, so each pixel's probabilities come from one crop, as in the reference",
    ),
)
