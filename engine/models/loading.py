"""Turn a weights spec into a ready model: CLIP, SAM or upsampler.

A spec is a registry name (``openai-vit-b-16``), a path to a checkpoint file, or None for the
registry's default. Registry weights are found in the cache or an offline folder, else downloaded
(see ``download``); every file is read by ``checkpoints`` (no pickled code runs), its architecture
is checked against the one asked for, and it is loaded into a model built by ``architectures`` /
``sam_architectures`` / ``engine.upsamplers``.

``random_weights=True`` builds the architecture with seeded random weights instead (tests,
benchmarks): the result is useless for real segmentation, so it warns loudly.

Every loader returns an ``info`` dict for the run's sidecar: name, architecture, file, sha256,
random_weights and load_report (missing/unexpected keys, notes).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from engine.errors import UserError
from engine.models import cache, registry
from engine.models.checkpoints import Checkpoint, read_checkpoint

LOG = logging.getLogger(__name__)
NO_UPSAMPLER = "none"


def _warn_random(kind: str, architecture: str, seed: int) -> None:
    message = (
        f"RANDOM WEIGHTS: the {kind} model {architecture} was built with random weights (seed {seed}); "
        "its output is meaningless for real segmentation."
    )
    warnings.warn(message, stacklevel=3)
    LOG.warning(message)


def _resolve(spec: str | None, kind: str) -> tuple[registry.WeightEntry | None, Path | None]:
    """(registry entry, None) or (None, local file) for a spec."""
    if spec is None or spec == "":
        return registry.get_entry(registry.default_name(kind), kind), None
    if registry.is_known(spec):
        return registry.get_entry(spec, kind), None
    path = Path(spec).expanduser()
    if path.exists():  # a folder too: read_checkpoint says what it is not
        return None, path
    if path.suffix or "/" in spec or "\\" in spec:
        raise UserError(f"{kind} weights file not found: {path}")
    registry.get_entry(spec, kind)  # raises: unknown name, listing the known ones
    raise AssertionError("unreachable")


def _obtain(entry: registry.WeightEntry, progress, offline_dir, allow_download: bool) -> cache.LocatedFile:
    found = cache.find_weights(entry, offline_dir, progress)
    if found is not None:
        return found
    if not allow_download:
        from engine.models.download import manual_help

        raise UserError(
            f"weights {entry.name} are not in the cache ({cache.entry_dir(entry)}) nor an offline folder. "
            f"Run `python -m engine models download {entry.name}`. {manual_help(entry)}"
        )
    from engine.models.download import download

    return download(entry, progress=progress, offline_dir=offline_dir)


def _read(entry, path, progress, offline_dir, allow_download) -> tuple[Checkpoint, str, str]:
    """Read the checkpoint of an entry or a local path: (checkpoint, file, sha256)."""
    if entry is not None:
        located = _obtain(entry, progress, offline_dir, allow_download)
        return read_checkpoint(located.path), str(located.path), located.sha256
    return read_checkpoint(path), str(path), cache.file_sha256(path, progress)


def _check_kind(checkpoint: Checkpoint, kind: str) -> None:
    if checkpoint.kind != kind:
        held = f"{checkpoint.kind} weights" if checkpoint.kind else "no weights this engine knows"
        raise UserError(f"{checkpoint.path} holds {held} ({checkpoint.format}), not {kind} weights")


def _file_architecture(path: Path, kind: str) -> str | None:
    """The architecture a local file holds, refused unless it holds ``kind`` weights (random-weight
    runs build that architecture, so a SAM file given as --clip must not pass unnoticed)."""
    checkpoint = read_checkpoint(path)
    _check_kind(checkpoint, kind)
    return checkpoint.architecture


def _check_architecture(checkpoint: Checkpoint, wanted: str | None) -> str:
    found = checkpoint.architecture
    if wanted and found and wanted != found:
        raise UserError(
            f"{checkpoint.path} holds a {found} {checkpoint.kind} checkpoint, but {wanted} was asked for: "
            f"the architectures {found} and {wanted} differ. "
            f"Choose weights made for {wanted}, or ask for {found}."
        )
    if not (wanted or found):
        raise UserError(
            f"cannot tell the architecture of {checkpoint.path} from its tensor shapes "
            f"({checkpoint.details}); name it explicitly."
        )
    return wanted or found


def load_state(
    model, tensors: dict, *, strict: bool, label: str, architecture: str, required_prefix: str = ""
):
    """Load ``tensors`` into ``model``; returns the report {missing, unexpected}.

    A shape mismatch is always an error naming the architecture. ``strict=False`` (GeoRSCLIP) tolerates
    missing/unexpected keys and reports them, except missing keys under ``required_prefix`` (the part
    of the model the engine uses), which would leave random weights in it.
    """
    own = model.state_dict()
    tensors = dict(tensors)
    for key in ("logit_scale", "logit_bias"):  # scalar vs 1-element: same value, open_clip does this too
        if key in tensors and key in own and tensors[key].numel() == own[key].numel():
            tensors[key] = tensors[key].reshape(own[key].shape)
    wrong = [k for k in tensors if k in own and tuple(tensors[k].shape) != tuple(own[k].shape)]
    if wrong:
        key = wrong[0]
        raise UserError(
            f"{label} does not fit architecture {architecture}: {len(wrong)} tensors differ in shape, e.g. "
            f"{key} is {tuple(tensors[key].shape)} in the file and {tuple(own[key].shape)} in {architecture}."
        )
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if strict and (missing or unexpected):
        raise UserError(
            f"{label} does not match architecture {architecture}: {len(missing)} missing keys "
            f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}."
        )
    needed = [k for k in missing if k.startswith(required_prefix)] if required_prefix else []
    if needed:
        raise UserError(
            f"{label} lacks {len(needed)} weights of architecture {architecture} the engine needs, "
            f"e.g. {needed[:5]}."
        )
    model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        LOG.warning(
            "%s loaded non-strictly: %d missing, %d unexpected keys", label, len(missing), len(unexpected)
        )
    return {"missing": missing, "unexpected": unexpected}


def _info(name, architecture, file, sha256, random_weights, report=None, **extra) -> dict:
    return {
        "name": name,
        "architecture": architecture,
        "file": file,
        "sha256": sha256,
        "random_weights": random_weights,
        "load_report": report or {},
        **extra,
    }


def load_clip_model(
    spec: str | None = None,
    *,
    architecture: str | None = None,
    random_weights: bool = False,
    seed: int = 0,
    progress=None,
    offline_dir=None,
    allow_download: bool = True,
    strict: bool | None = None,
):
    """(open_clip model in eval mode on the CPU, tokenizer, info) for a CLIP weights spec.

    ``strict``: None follows the registry entry (GeoRSCLIP loads non-strictly), True for local files.
    """
    from engine.models.architectures import create_clip, tokenizer_for

    entry, path = _resolve(spec, "clip")
    quick_gelu = entry.quick_gelu if entry else True
    name = entry.name if entry else str(path)
    if random_weights:
        arch = architecture or (entry.architecture if entry else _file_architecture(path, "clip"))
        if arch is None:
            raise UserError(f"cannot tell the architecture of {path}; pass architecture=")
        name = name if entry is None or entry.architecture == arch else f"random-{arch}"
        model = create_clip(arch, seed=seed, quick_gelu=quick_gelu)
        _warn_random("CLIP", arch, seed)
        return model, tokenizer_for(arch), _info(name, arch, None, None, True, quick_gelu=quick_gelu)
    checkpoint, file, digest = _read(entry, path, progress, offline_dir, allow_download)
    _check_kind(checkpoint, "clip")
    arch = _check_architecture(checkpoint, architecture or (entry.architecture if entry else None))
    model = create_clip(arch, seed=seed, quick_gelu=quick_gelu)
    report = load_state(
        model,
        checkpoint.tensors,
        strict=strict if strict is not None else (entry.strict if entry else True),
        label=file,
        architecture=arch,
        required_prefix="visual.",
    )
    report["notes"] = checkpoint.notes
    report["format"] = checkpoint.format
    info = _info(name, arch, file, digest, False, report, quick_gelu=quick_gelu)
    return model.eval(), tokenizer_for(arch), info


def load_sam_model(
    spec: str | None = None,
    *,
    architecture: str | None = None,
    random_weights: bool = False,
    seed: int = 0,
    progress=None,
    offline_dir=None,
    allow_download: bool = True,
):
    """(segment-anything ``Sam`` in eval mode on the CPU, info) for a SAM weights spec.

    The model is built by ``create_sam`` and filled from the safely read state dict: no path is ever
    handed to segment-anything's builders (they unpickle without ``weights_only``).
    """
    from engine.models.sam_architectures import create_sam

    entry, path = _resolve(spec, "sam")
    name = entry.name if entry else str(path)
    if random_weights:
        arch = architecture or (entry.architecture if entry else _file_architecture(path, "sam"))
        if arch is None:
            raise UserError(f"cannot tell the SAM architecture of {path}; pass architecture=")
        name = name if entry is None or entry.architecture == arch else f"random-{arch}"
        sam = create_sam(arch, seed=seed)
        _warn_random("SAM", arch, seed)
        return sam, _info(name, arch, None, None, True)
    checkpoint, file, digest = _read(entry, path, progress, offline_dir, allow_download)
    _check_kind(checkpoint, "sam")
    arch = _check_architecture(checkpoint, architecture or (entry.architecture if entry else None))
    sam = create_sam(arch, seed=seed)
    report = load_state(sam, checkpoint.tensors, strict=True, label=file, architecture=f"SAM {arch}")
    report["notes"] = checkpoint.notes
    report["format"] = checkpoint.format
    return sam.eval(), _info(name, arch, file, digest, False, report)


def load_upsampler_model(
    spec: str | None = None,
    *,
    random_weights: bool = False,
    seed: int = 0,
    progress=None,
    offline_dir=None,
    allow_download: bool = True,
):
    """(upsampler module in eval mode, info), or (None, {"name": "none"}) for spec "none"."""
    if spec == NO_UPSAMPLER:
        return None, {"name": NO_UPSAMPLER}
    import torch

    from engine.upsamplers.stacks import build_upsampler, upsampler_from_state_dict

    entry, path = _resolve(spec, "upsampler")
    name = entry.name if entry else str(path)
    if random_weights:
        if entry is not None:
            kind, dim = entry.architecture, entry.dim
        else:
            checkpoint = read_checkpoint(path)
            _check_kind(checkpoint, "upsampler")
            kind, dim = checkpoint.architecture, checkpoint.details.get("dim")
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            module = build_upsampler(kind, int(dim))
        finally:
            torch.random.set_rng_state(state)
        _warn_random("upsampler", kind, seed)
        return module.eval(), _info(name, kind, None, None, True, dim=dim)
    checkpoint, file, digest = _read(entry, path, progress, offline_dir, allow_download)
    _check_kind(checkpoint, "upsampler")
    kind = _check_architecture(checkpoint, entry.architecture if entry else None)
    if entry is not None and entry.dim and checkpoint.details.get("dim") != entry.dim:
        raise UserError(
            f"{file} lifts {checkpoint.details.get('dim')}-channel features, but {entry.name} is made for "
            f"{entry.dim} channels"
        )
    module, built_kind = upsampler_from_state_dict(checkpoint.tensors)
    if built_kind != kind:
        raise UserError(f"{file}: upsampler kinds disagree ({built_kind} built, {kind} expected)")
    report = {"missing": [], "unexpected": [], "notes": checkpoint.notes, "format": checkpoint.format}
    return module.eval(), _info(name, kind, file, digest, False, report, dim=checkpoint.details.get("dim"))


def load_sam3_model(
    spec: str | None = None,
    arch=None,
    *,
    progress=None,
    offline_dir=None,
    allow_download: bool = True,
    token: str | None = None,
):
    """(SAM 3 image model in eval mode on the CPU, info) for a SAM 3 weights spec (registry name, a
    ``sam3.pt`` file or a state dict of its detector; None: the registry's ``sam3``).

    The file is read without unpickling code (``checkpoints``); its ``detector.`` tensors fill a model
    built from the ``sam3`` modules (``engine.methods.segearth_ov3.architecture``). The video tracker's
    tensors are ignored; a tensor the image model needs but the file lacks is an error.
    """
    from engine.methods.segearth_ov3.architecture import ARCHITECTURES, build_image_model

    entry, path = _resolve(spec, "sam3")
    name = entry.name if entry else str(path)
    if entry is not None and not allow_download:
        located = _obtain(entry, progress, offline_dir, False)
        checkpoint, file, digest = read_checkpoint(located.path), str(located.path), located.sha256
    elif entry is not None:
        located = cache.find_weights(entry, offline_dir, progress)
        if located is None:
            from engine.models.download import download

            located = download(entry, progress=progress, offline_dir=offline_dir, token=token)
        checkpoint, file, digest = read_checkpoint(located.path), str(located.path), located.sha256
    else:
        checkpoint, file, digest = read_checkpoint(path), str(path), cache.file_sha256(path, progress)
    _check_kind(checkpoint, "sam3")
    wanted = next((n for n, a in ARCHITECTURES.items() if a == arch), None) if arch is not None else "full"
    arch_name = _check_architecture(checkpoint, wanted)
    label = f"SAM 3 {arch_name}"
    model = build_image_model(ARCHITECTURES[arch_name])
    report = load_state(model, checkpoint.tensors, strict=False, label=file, architecture=label)
    if report["missing"]:
        raise UserError(
            f"{file} lacks {len(report['missing'])} tensors of SAM 3's image model, e.g. "
            f"{report['missing'][:3]}: not a complete SAM 3 checkpoint"
        )
    report["notes"] = checkpoint.notes
    report["format"] = checkpoint.format
    return model.eval(), _info(name, arch_name, file, digest, False, report)
