"""Build ReSeg-CLIP from the method registry's options (``engine.methods.registry``).

Method-specific options travel in ``MethodOptions.extra``:

- ``sam``: SAM weights, a registry name or checkpoint file (None: the registry's default SAM);
- ``schedule``: per-block attention schedule text (None: the reference pattern scaled to the model);
- ``sam_window``: longest side of a SAM window in working pixels (default 896);
- ``mask_cache_dir``: folder for the on-disk SAM mask cache (default: memory only);
- ``sam_parameter_sets``: list of dicts overriding the four reference SAM parameter sets.

SAM models are loaded once per process and kept (the worker segments many requests with one SAM).
"""

from __future__ import annotations

from engine.errors import UserError
from engine.methods.reseg.spec import RESEG_CLIP

_SAM_MODELS: dict[tuple, tuple] = {}
#: The ``MethodOptions.extra`` keys ReSeg-CLIP understands (declared by its spec).
EXTRA_OPTIONS = frozenset(option.key for option in RESEG_CLIP.extra)


def load_sam_cached(spec: str | None, *, random_weights: bool, seed: int):
    """(Sam, info) once per process: a random-weights architecture name ("vit_b", "tiny", ...) is built
    by ``create_sam``; anything else goes through ``engine.models.loading.load_sam_model``."""
    key = (spec, random_weights, seed)
    if key not in _SAM_MODELS:
        from engine.models.sam_architectures import SAM_ARCHITECTURES, create_sam

        if random_weights and spec in SAM_ARCHITECTURES:
            info = {"name": f"random-{spec}", "architecture": spec, "random_weights": True, "seed": seed}
            _SAM_MODELS[key] = (create_sam(spec, seed=seed), info)
        else:
            from engine.models.loading import load_sam_model

            _SAM_MODELS[key] = load_sam_model(spec, random_weights=random_weights, seed=seed)
    return _SAM_MODELS[key]


def create_reseg_clip(options, models):
    """``(MethodOptions, ModelCache) → ResegClip`` for ``METHODS["reseg-clip"]``."""
    from engine.methods.reseg_clip import ResegClip, ResegClipSettings
    from engine.runtime.onednn_linear import use_onednn_linears
    from engine.runtime.precision import torch_dtype
    from engine.sam.fast_decoder import install_fast_decoder
    from engine.sam.fast_encoder import install_fast_encoder
    from engine.sam.mask_upsampling import install_fused_mask_upsampling
    from engine.sam.parameter_sets import parameter_set_from_dict

    extra = dict(options.extra or {})
    unknown = set(extra) - EXTRA_OPTIONS
    if unknown:
        raise UserError(f"unknown ReSeg-CLIP options {sorted(unknown)}; known: {sorted(EXTRA_OPTIONS)}")
    common = dict(
        random_weights=options.random_weights, seed=options.seed, device=options.device, dtype=options.dtype
    )
    model, tokenizer, clip_info = models.clip(options.clip, **common)
    if extra.get("sam") is None and options.random_weights:
        extra["sam"] = "tiny"  # a random-weights run needs no SAM file; "tiny" keeps it fast
    sam_spec = extra.get("sam")
    sam, sam_info = load_sam_cached(sam_spec, random_weights=options.random_weights, seed=options.seed)
    use_onednn_linears(sam)  # as for CLIP (engine.runtime.onednn_linear); idempotent for a cached SAM
    install_fast_decoder(sam)  # many prompts against one embedding: ~3x faster, same masks
    install_fast_encoder(sam)  # no 805 MB attention matrices in the global blocks; contiguous stream
    install_fused_mask_upsampling(sam)  # one separable map instead of two resizes through 1024²
    if options.random_weights:
        # Random SAMs of one architecture differ by seed: the seed must be part of the mask-cache key.
        sam_info = {**sam_info, "seed": options.seed}
    settings = {}
    if options.templates:
        settings["templates"] = options.templates
    if extra.get("schedule"):
        settings["schedule"] = extra["schedule"]
    if extra.get("sam_window"):
        settings["sam_window_px"] = int(extra["sam_window"])
    if extra.get("mask_cache_dir"):
        settings["mask_cache_dir"] = str(extra["mask_cache_dir"])
    if extra.get("sam_parameter_sets"):
        settings["parameter_sets"] = tuple(
            parameter_set_from_dict(data, f"set{i + 1}") for i, data in enumerate(extra["sam_parameter_sets"])
        )
    return ResegClip(
        model,
        tokenizer,
        sam,
        ResegClipSettings(**settings),
        device=options.device,
        dtype=torch_dtype(options.dtype, options.device),
        model_info=clip_info,
        sam_info=sam_info,
    )
