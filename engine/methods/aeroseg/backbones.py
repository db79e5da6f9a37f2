"""The frozen base of an AerOSeg: CLIP and SAM weights (registry, file, or seeded random), their identity
recorded at training time and checked when a trained model is loaded."""

from __future__ import annotations

import logging
import warnings

import torch

from engine.errors import UserError
from engine.methods.aeroseg.architecture import AerOSegArchitecture
from engine.methods.aeroseg.model import AerOSeg
from engine.methods.aeroseg.model_file import (
    architecture_of,
    load_model_state,
    read_tensors,
    tensor_fingerprint,
)

log = logging.getLogger(__name__)


def _identity(info: dict, module: torch.nn.Module, random_weights: bool, seed: int) -> dict:
    identity = {
        "name": info.get("name"),
        "architecture": info.get("architecture"),
        "file": info.get("file"),
        "sha256": info.get("sha256"),
        "random_weights": bool(random_weights),
        "seed": seed if random_weights else None,
    }
    if random_weights:  # no file to hash: the state itself identifies the seeded weights
        identity["state_sha256"] = tensor_fingerprint(module)
    return identity


def build_base(
    arch: AerOSegArchitecture,
    *,
    random_weights: bool = False,
    seed: int = 0,
    clip_weights: str | None = None,
    sam_weights: str | None = None,
    head_seed: int | None = None,
) -> tuple[AerOSeg, dict]:
    """(an untrained AerOSeg on the CPU, {"clip": identity, "sam": identity}).

    Without ``random_weights`` the architecture's registry weights (or the given files) are loaded; an
    architecture without published weights (``tiny``) then needs ``random_weights``.
    """
    from engine.models.loading import load_clip_model, load_sam_model

    clip_spec = clip_weights or arch.clip_weights
    sam_spec = sam_weights or arch.sam_weights
    if not random_weights and (clip_spec is None or sam_spec is None):
        raise UserError(f"the {arch.name} architecture has no published base weights: add --random-weights")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loaders log their own random-weights warning
        clip, tokenizer, clip_info = load_clip_model(
            None if random_weights else clip_spec,
            architecture=arch.clip_architecture,
            random_weights=random_weights,
            seed=seed,
        )
        sam, sam_info = load_sam_model(
            None if random_weights else sam_spec,
            architecture=arch.sam_architecture,
            random_weights=random_weights,
            seed=seed,
        )
    base = {
        "clip": _identity(clip_info, clip, random_weights, seed),
        "sam": _identity(sam_info, sam.image_encoder, random_weights, seed),
    }
    state = torch.random.get_rng_state()
    torch.manual_seed(seed if head_seed is None else head_seed)
    try:
        model = AerOSeg(arch, clip, tokenizer, sam.image_encoder)
    finally:
        torch.random.set_rng_state(state)
    return model, base


def _check_base(recorded: dict, found: dict, label: str) -> None:
    for part in ("clip", "sam"):
        want, have = recorded.get(part, {}), found[part]
        key = "state_sha256" if want.get("random_weights") else "sha256"
        if want.get(key) and have.get(key) and want[key] != have[key]:
            raise UserError(
                f"{label} was trained on other {part.upper()} weights ({want.get('name')}, sha256 "
                f"{str(want[key])[:12]}…) than the ones found now "
                f"({have.get('name')}, {str(have[key])[:12]}…)"
            )


def load_trained(path: str, *, device: str = "cpu") -> tuple[AerOSeg, dict]:
    """(the trained AerOSeg in eval mode on ``device``, its metadata) from MODEL.safetensors."""
    tensors, metadata = read_tensors(path)
    arch = architecture_of(metadata)
    base = metadata.get("base", {})
    random_weights = bool(base.get("clip", {}).get("random_weights"))
    if random_weights:
        log.warning(
            "%s was trained on RANDOM base weights (a test or demo model): its maps mean little", path
        )
    model, found = build_base(
        arch,
        random_weights=random_weights,
        seed=int(base.get("clip", {}).get("seed") or 0),
        clip_weights=None if random_weights else base.get("clip", {}).get("name"),
        sam_weights=None if random_weights else base.get("sam", {}).get("name"),
    )
    _check_base(base, found, str(path))
    load_model_state(model, tensors, str(path))
    return model.to(device).eval(), metadata
