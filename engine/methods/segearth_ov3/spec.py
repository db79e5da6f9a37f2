"""SegEarth-OV3's defaults, own options and presets (no torch); the method is
engine.methods.segearth_ov3.method, built by engine.methods.segearth_ov3.factory.

Defaults are the reference's OpenEarthMap configuration (earth-insights/SegEarth-OV-3
``configs/cfg_openearthmap.py``, ``segearthov3_segmentor.py``): 512-px windows with stride 512 at the
imagery's own resolution, probability threshold 0.1, instance confidence 0.1.
"""

from __future__ import annotations

from engine.errors import UserError
from engine.methods.segearth_ov3.settings import DEFAULT_PRESET, PRESETS, SegEarthOV3Settings
from engine.methods.spec import ExtraOption, MethodSpec, ThresholdRule

#: The parts of a query's map (the reference's use_transformer_decoder, use_sem_seg, use_presence_score).
PARTS = ("instances", "semantic", "presence")
SAM3_CONFIGS = ("full", "tiny")


def parse_preset(value) -> str:
    key = str(value).strip().lower()
    if key not in PRESETS:
        raise UserError(f"unknown --sam3-preset {value!r}: use one of {', '.join(PRESETS)}")
    return key


def parse_config(value) -> str:
    key = str(value).strip().lower()
    if key not in SAM3_CONFIGS:
        raise UserError(f"unknown --sam3-config {value!r}: use one of {', '.join(SAM3_CONFIGS)}")
    return key


def parse_confidence(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"--instance-confidence must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise UserError(f"--instance-confidence must be between 0 and 1, got {value!r}")
    return number


def parse_parts(value) -> tuple[str, ...]:
    """ "instances,semantic,presence" (any subset with instances or semantic) → a tuple of part names."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    parts = tuple(dict.fromkeys(str(p).strip().lower() for p in items if str(p).strip()))
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not ({"instances", "semantic"} & set(parts)):
        raise UserError(
            f"--sam3-parts {value!r}: give a comma-separated subset of {', '.join(PARTS)} that includes "
            "instances or semantic"
        )
    return parts


LOOPS = ("batched", "per-query")


def parse_loop(value) -> str:
    key = str(value).strip().lower()
    if key not in LOOPS:
        raise UserError(f"unknown --sam3-loop {value!r}: use one of {', '.join(LOOPS)}")
    return key


def preset_threshold(extra: dict) -> float | None:
    """The probability threshold of the request's ``sam3_preset`` (None: no preset given)."""
    preset = extra.get("sam3_preset")
    return None if preset is None else float(PRESETS[parse_preset(preset)]["probability_threshold"])


_DEFAULTS = SegEarthOV3Settings()

SEGEARTH_OV3 = MethodSpec(
    name="segearth-ov3",
    label="SegEarth-OV3 (SAM 3, most accurate; needs a GPU)",
    factory="engine.methods.segearth_ov3.factory:create_segearth_ov3",
    crop_size=_DEFAULTS.crop_size,
    crop_stride=_DEFAULTS.crop_stride,
    gsd_factor=1.0,
    gsd_rule="native GSD (the reference slides its window over the image at its own resolution)",
    threshold=ThresholdRule(
        "score",
        _DEFAULTS.probability_threshold,
        "minimum score of the winning class (SAM 3's mask probability x presence, no softmax); "
        "OpenEarthMap uses 0.1, LoveDA and iSAID 0.5",
    ),
    logit_scale=1.0,
    templates="none: each class name (and synonym) is SAM 3's text prompt as written",
    extra=(
        ExtraOption("sam3", "sam3", "SAM 3 weights: registry name or checkpoint file", "NAME|FILE"),
        ExtraOption(
            "sam3_config",
            "sam3_config",
            "SAM 3 architecture: full (the published model) or tiny (tests; random weights only)",
            "full|tiny",
            parse_config,
        ),
        ExtraOption(
            "sam3_preset",
            "sam3_preset",
            f"reference settings of one benchmark: {', '.join(PRESETS)} (default {DEFAULT_PRESET}): "
            "window, stride, instance confidence and threshold",
            "NAME",
            parse_preset,
        ),
        ExtraOption(
            "instance_confidence",
            "instance_confidence",
            "objects scoring at most this are ignored (default: the preset's, 0.1 for OpenEarthMap)",
            "0..1",
            parse_confidence,
        ),
        ExtraOption(
            "sam3_parts",
            "sam3_parts",
            "parts combined into each class's map (default instances,semantic,presence)",
            "PARTS",
            parse_parts,
        ),
        ExtraOption(
            "sam3_loop",
            "sam3_loop",
            "batched (default: every crop x query pair in a few calls) or per-query (the reference's "
            "loop, one query at a time; same maps, slower)",
            "batched|per-query",
            parse_loop,
        ),
    ),
    reference={"sam3_loop": "per-query"},
    reference_notes=(
        "each crop grounds one query at a time, its text encoded again each time, as the reference's loop "
        "does (the maps are the same; only the order of work differs)",
        "still different: pixels under the threshold are 0 (unclassified), where the reference gives them "
        "its background class; the reference runs bf16 autocast on CUDA (here: --dtype)",
    ),
    threshold_from_extra=preset_threshold,
)
