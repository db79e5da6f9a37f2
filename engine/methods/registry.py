"""Methods by name, and the models they need loaded once and reused (the worker keeps one cache).

A method is declared by its spec (engine.methods.spec.MethodSpec: defaults, own options, factory),
registered by one line in engine.methods.catalogue; ``create_method`` builds it from the spec's factory
``(MethodOptions, ModelCache) → DenseMethod``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from engine.methods.catalogue import SPECS, method_spec

log = logging.getLogger(__name__)

RANDOM_WEIGHTS_ENV = "RS_OVSEG_RANDOM_WEIGHTS"
RANDOM_WEIGHTS_WARNING = (
    "RANDOM WEIGHTS: the models are built with seeded random weights (--random-weights or "
    f"{RANDOM_WEIGHTS_ENV}=1). The output is MEANINGLESS; use this only for tests and benchmarks."
)


def random_weights_requested(flag: bool) -> bool:
    """The flag, or ``RS_OVSEG_RANDOM_WEIGHTS=1`` in the environment (never on by default)."""
    return bool(flag) or os.environ.get(RANDOM_WEIGHTS_ENV, "").strip() in ("1", "true", "yes")


@dataclass(frozen=True)
class MethodOptions:
    """What a method factory may use; None means the method's own default."""

    clip: str | None = None  # registry name or checkpoint file (random weights: an architecture name too)
    upsampler: str | None = None  # registry name, checkpoint file, or "none" (bilinear)
    attention: str | None = None
    templates: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    random_weights: bool = False
    seed: int = 0
    extra: dict = field(default_factory=dict)  # method-specific settings

    def to_json(self) -> dict:
        return asdict(self)


class ModelCache:
    """Loaded CLIP models and upsamplers, keyed by everything that changes them."""

    def __init__(self) -> None:
        self._clip: dict[tuple, tuple] = {}
        self._upsampler: dict[tuple, tuple] = {}

    def clip(self, spec: str | None, *, random_weights: bool, seed: int, device: str, dtype: str):
        """(model, tokenizer, info) for ``spec``."""
        key = (spec, random_weights, seed, device, dtype)
        if key not in self._clip:
            from engine.models.architectures import known_architectures
            from engine.models.loading import load_clip_model

            architecture = spec if random_weights and spec in known_architectures() else None
            model, tokenizer, info = load_clip_model(
                None if architecture else spec,
                architecture=architecture,
                random_weights=random_weights,
                seed=seed,
            )
            # fp32 products on CPU through oneDNN (MKL's AVX2 path on AMD runs at ~half the peak);
            # every other device/dtype takes the modules' usual path, decided per call.
            from engine.runtime.onednn_linear import use_onednn_linears

            use_onednn_linears(model)
            self._clip[key] = (model, tokenizer, dict(info))
        return self._clip[key]

    def upsampler(self, spec: str | None, *, random_weights: bool, seed: int, device: str, dtype: str):
        """(module or None, info) for ``spec``; "none" → (None, info saying bilinear)."""
        if spec is not None and spec.strip().lower() == "none":
            return None, {"name": "none", "upsampler": "bilinear (--upsampler none)"}
        key = (spec, random_weights, seed, device, dtype)
        if key not in self._upsampler:
            from engine.models.loading import load_upsampler_model

            module, info = load_upsampler_model(spec, random_weights=random_weights, seed=seed)
            self._upsampler[key] = (module, dict(info))
        return self._upsampler[key]

    def clear(self) -> None:
        self._clip.clear()
        self._upsampler.clear()


def create_segearth_ov(options: MethodOptions, models: ModelCache):
    """``(MethodOptions, ModelCache) → SegEarthOV``: the factory named by SegEarth-OV's spec."""
    from engine.methods.segearth_ov import SegEarthOV, SegEarthOVSettings
    from engine.runtime.precision import torch_dtype

    common = dict(
        random_weights=options.random_weights, seed=options.seed, device=options.device, dtype=options.dtype
    )
    model, tokenizer, clip_info = models.clip(options.clip, **common)
    upsampler, upsampler_info = models.upsampler(options.upsampler, **common)
    settings = SegEarthOVSettings(
        attention=options.attention or "segearth",
        templates=options.templates or "imagenet",
        **options.extra,
    )
    return SegEarthOV(
        model,
        tokenizer,
        settings,
        upsampler,
        device=options.device,
        dtype=torch_dtype(options.dtype, options.device),
        model_info=clip_info,
        upsampler_info=upsampler_info,
    )


MethodFactory = Callable[[MethodOptions, ModelCache], object]
#: Method names (``--method``), from the catalogue of specs.
METHODS = tuple(SPECS)


def default_crop_geometry(name: str) -> tuple[int, int]:
    """(crop size, crop stride) in working pixels that method ``name`` uses by default, so a run can be
    planned (and estimated) before the model loads. SegEarth-OV: 224 / 112; ReSeg-CLIP: 224 / 224."""
    spec = method_spec(name)
    return spec.crop_size, spec.crop_stride


def create_method(name: str, options: MethodOptions, models: ModelCache | None = None):
    """Build method ``name``; unknown names are a user error listing the known ones."""
    spec = method_spec(name)
    if options.random_weights:
        log.warning(RANDOM_WEIGHTS_WARNING)
    return spec.create(options, models or ModelCache())
