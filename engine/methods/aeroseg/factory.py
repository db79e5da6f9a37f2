"""``(MethodOptions, ModelCache) → AerOSegMethod``: the factory named by AerOSeg's spec. The last model
loaded is kept for the next run (the worker reuses it)."""

from __future__ import annotations

import os

_LOADED: dict[tuple, tuple] = {}


def create_aeroseg(options, models):
    from engine.errors import UserError
    from engine.methods.aeroseg.backbones import load_trained
    from engine.methods.aeroseg.method import AerOSegMethod, AerOSegSegmentSettings
    from engine.runtime.precision import torch_dtype

    extra = dict(options.extra)
    path = extra.get("model")
    if not path:
        raise UserError(
            "--method aeroseg needs --model MODEL.safetensors (train one with: python -m engine train)"
        )
    key = (os.path.abspath(path), os.path.getmtime(path) if os.path.exists(path) else None, options.device)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_trained(path, device=options.device)
    model, metadata = _LOADED[key]
    return AerOSegMethod(
        model,
        {**metadata, "file": os.path.abspath(path)},
        AerOSegSegmentSettings(
            crop_stride=extra.get("crop_stride"), global_view=extra.get("global_view", True) is not False
        ),
        device=options.device,
        dtype=torch_dtype(options.dtype, options.device),
    )
