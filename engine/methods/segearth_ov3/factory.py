"""``(MethodOptions, ModelCache) → SegEarthOV3``: the factory named by SegEarth-OV3's spec.

The SAM 3 model is kept for the next run with the same weights (the worker reuses it); one at a time,
since the full model takes about 3.4 GB.
"""

from __future__ import annotations

import logging

from engine.errors import UserError

log = logging.getLogger(__name__)

_LOADED: dict[tuple, tuple] = {}


def load_sam3_cached(spec: str | None, config: str, *, random_weights: bool, seed: int, device: str = "cpu"):
    """(model, architecture, info) for weights ``spec`` (registry name or file; None: the default).
    Keyed by device too: SAM 3's position-encoding caches stay on the device of their first forward."""
    from engine.methods.segearth_ov3.architecture import architecture, build_image_model

    key = (spec, config, random_weights, seed, str(device))
    if key not in _LOADED:
        _LOADED.clear()
        arch = architecture(config)
        if random_weights:
            model = build_image_model(arch, seed=seed)
            info = {"name": f"random-sam3-{config}", "weights": f"random (seed {seed})"}
        else:
            if config != "full":
                raise UserError("--sam3-config tiny exists for tests: use it with --random-weights")
            from engine.models.loading import load_sam3_model

            model, info = load_sam3_model(spec, arch)
        _LOADED[key] = (model, arch, dict(info))
    return _LOADED[key]


def settings_from_extra(extra: dict):
    """SegEarthOV3Settings from the request's method options (preset, then explicit values)."""
    from engine.methods.segearth_ov3.settings import preset_settings

    parts = extra.get("sam3_parts")
    switches = {}
    if parts is not None:
        switches = {
            "use_instances": "instances" in parts,
            "use_semantic": "semantic" in parts,
            "use_presence": "presence" in parts,
        }
    return preset_settings(
        extra.get("sam3_preset"),
        confidence_threshold=extra.get("instance_confidence"),
        pairs_per_call=extra.get("pairs_per_call"),
        per_query_loop=True if extra.get("sam3_loop") == "per-query" else None,
        **switches,
    )


def create_segearth_ov3(options, models):
    from engine.methods.segearth_ov3.method import SegEarthOV3

    extra = dict(options.extra)
    model, arch, info = load_sam3_cached(
        extra.get("sam3"),
        extra.get("sam3_config") or "full",
        random_weights=options.random_weights,
        seed=options.seed,
        device=options.device,
    )
    if options.device == "cpu" and arch.vit_depth >= 32:
        log.warning(
            "SegEarth-OV3 on the CPU: SAM 3 takes tens of seconds per 512-px window; a GPU is advised"
        )
    return SegEarthOV3(
        model, arch, settings_from_extra(extra), device=options.device, dtype=options.dtype, model_info=info
    )
