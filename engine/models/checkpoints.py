"""Tell what a checkpoint file holds, from tensor names and shapes alone.

Files are read without executing anything by ``engine.models.checkpoint_reading`` (safetensors,
``torch.save`` zip or legacy files under ``weights_only``, TorchScript archives through a whitelisting
unpickler); this module identifies what was read.

Formats recognised (``Checkpoint.format``):
- ``openclip-state-dict``: open_clip / OpenAI key names (``visual.conv1.weight``, ``transformer.…``)
  as a plain dict; RemoteCLIP and GeoRSCLIP files are this.
- ``openai-torchscript``: OpenAI's original TorchScript CLIP archives.
- ``openclip-training-checkpoint``: open_clip's training output (``{"epoch", "state_dict", …}`` with
  ``module.`` prefixes from DistributedDataParallel); SkyCLIP's ``epoch_20.pt`` is this.
- ``sam-state-dict``: segment-anything's ``.pth`` (``image_encoder.…``, ``mask_decoder.…``).
- ``lightning-upsampler``: PyTorch-Lightning checkpoint with the upsampler under ``upsampler.``.
- ``upsampler-state-dict``: bare upsampler keys (``up.…`` or ``up1.…``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import UserError
from engine.models.checkpoint_reading import read_raw

# Keys some writers add that are not module parameters: OpenAI's TorchScript scalars and the causal
# attention mask TorchScript keeps as a buffer (open_clip rebuilds it itself).
NON_WEIGHT_KEYS = frozenset({"input_resolution", "context_length", "vocab_size", "attn_mask"})
_BLOCK_INDEX = re.compile(r"\.(\d+)\.")


@dataclass
class Checkpoint:
    """What a checkpoint file holds once read safely.

    ``tensors``: the model's weights with wrapper prefixes removed (``module.``, ``upsampler.``), keyed
    as the target module expects. ``architecture``: inferred from shapes (None if unknown).
    """

    path: Path
    container: str  # safetensors | torch-zip | torch-legacy | torchscript
    format: str
    kind: str | None  # clip | sam | upsampler | None
    tensors: dict
    architecture: str | None = None
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --- containers -------------------------------------------------------------------------------------


# --- identification ---------------------------------------------------------------------------------


def _tensor_dict(obj) -> dict | None:
    import torch

    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    return None


def _strip_prefix(tensors: dict, prefix: str) -> tuple[dict, list[str]]:
    """Keys under ``prefix`` with it removed, and the keys left out (not under it)."""
    kept = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    return kept, [k for k in tensors if not k.startswith(prefix)]


def _looks_clip(keys) -> bool:
    return "visual.conv1.weight" in keys or "visual.proj" in keys


def _looks_sam(keys) -> bool:
    return any(k.startswith("image_encoder.") for k in keys) and any(
        k.startswith("mask_decoder.") for k in keys
    )


SAM3_TRUNK = "backbone.vision_backbone.trunk."


def _looks_sam3(keys) -> bool:
    """SAM 3's image model (``Sam3Image``), its keys bare or under ``detector.`` as in ``sam3.pt``."""
    return any(k.startswith((SAM3_TRUNK, "detector." + SAM3_TRUNK)) for k in keys)


def _sam3_detector(tensors: dict, notes: list[str]) -> dict:
    """The image model's tensors of a SAM 3 checkpoint: ``detector.`` removed, the video tracker left out."""
    if not any(k.startswith("detector.") for k in tensors):
        return tensors
    kept, left_out = _strip_prefix(tensors, "detector.")
    if left_out:
        notes.append(
            f"ignored {len(left_out)} tensors outside 'detector.' (the video tracker, e.g. {left_out[0]})"
        )
    return kept


def infer_sam3_architecture(tensors: dict) -> str | None:
    """The SegEarth-OV3 architecture name ("full", "tiny") whose ViT width and depth the tensors have."""
    from engine.methods.segearth_ov3.architecture import ARCHITECTURES

    weight = tensors.get(SAM3_TRUNK + "patch_embed.proj.weight")
    if weight is None:
        return None
    width, depth = int(weight.shape[0]), _count_blocks(list(tensors), SAM3_TRUNK + "blocks.")
    for name, arch in ARCHITECTURES.items():
        if (arch.vit_width, arch.vit_depth) == (width, depth):
            return name
    return None


def _looks_upsampler(keys) -> bool:
    return any(k.startswith(("up.", "up1.")) for k in keys) and any(k.startswith("fixup_proj.") for k in keys)


def _count_blocks(keys, prefix: str) -> int:
    indices = set()
    for key in keys:
        if key.startswith(prefix):
            match = _BLOCK_INDEX.match("." + key[len(prefix) :])
            if match:
                indices.add(int(match.group(1)))
    return len(indices)


def clip_shape_facts(tensors: dict) -> dict:
    """Architecture facts of an open_clip/OpenAI CLIP state dict, from tensor shapes only."""
    conv = tensors["visual.conv1.weight"]
    grid_tokens = tensors["visual.positional_embedding"].shape[0] - 1
    keys = list(tensors)
    facts = {
        "vision_width": int(conv.shape[0]),
        "patch_size": int(conv.shape[-1]),
        "vision_layers": _count_blocks(keys, "visual.transformer.resblocks."),
        "image_size": round(grid_tokens**0.5) * int(conv.shape[-1]),
        "embed_dim": int(tensors["text_projection"].shape[1]) if "text_projection" in tensors else None,
        "text_width": int(tensors["ln_final.weight"].shape[0]) if "ln_final.weight" in tensors else None,
        "text_layers": _count_blocks(keys, "transformer.resblocks."),
    }
    return facts


def _config_facts(config: dict) -> dict:
    vision, text = config.get("vision_cfg", {}), config.get("text_cfg", {})
    return {
        "vision_width": vision.get("width"),
        "patch_size": vision.get("patch_size"),
        "vision_layers": vision.get("layers"),
        "image_size": vision.get("image_size"),
        "embed_dim": config.get("embed_dim"),
        "text_width": text.get("width"),
        "text_layers": text.get("layers"),
    }


def infer_clip_architecture(tensors: dict) -> str | None:
    """The open_clip architecture name whose config matches the tensor shapes (shortest such name)."""
    import open_clip

    from engine.models.architectures import known_architectures

    facts = clip_shape_facts(tensors)
    matches = []
    for name in known_architectures():
        if name.endswith("-quickgelu"):
            continue  # same shapes as the plain name; the activation is the registry's business
        config = open_clip.get_model_config(name) or {}
        if not isinstance(config.get("vision_cfg", {}).get("layers"), int):
            continue  # ResNet towers
        if "hf_model_name" in config.get("text_cfg", {}):
            continue  # Hugging Face text towers use other key names
        if _config_facts(config) == facts:
            matches.append(name)
    return min(matches, key=lambda n: (len(n), n)) if matches else None


def infer_sam_architecture(tensors: dict) -> str | None:
    from engine.models.sam_architectures import SAM_ARCHITECTURES

    width = int(tensors["image_encoder.patch_embed.proj.weight"].shape[0])
    depth = _count_blocks(list(tensors), "image_encoder.blocks.")
    for name, spec in SAM_ARCHITECTURES.items():
        if spec.encoder_embed_dim == width and spec.encoder_depth == depth:
            return name
    return None


def infer_upsampler_architecture(tensors: dict) -> tuple[str | None, int | None]:
    """(kind, feature channels): jbu_stack has ``up1..up4``, jbu_one one shared ``up``."""
    kind = "jbu_stack" if any(k.startswith("up1.") for k in tensors) else "jbu_one"
    weight = tensors.get("fixup_proj.1.weight")
    return kind, int(weight.shape[0]) if weight is not None else None


def identify(raw: object, container: str, path: Path) -> Checkpoint:
    """Classify a safely read object and normalise its keys."""
    notes: list[str] = []
    details: dict = {}
    if container == "torchscript":
        tensors = raw
        fmt = "openai-torchscript" if _looks_clip(tensors) else "torchscript"
    elif isinstance(raw, dict) and "state_dict" in raw and _tensor_dict(raw["state_dict"]) is not None:
        tensors = _tensor_dict(raw["state_dict"])
        details = {
            k: raw[k] for k in ("epoch", "global_step", "pytorch-lightning_version", "name") if k in raw
        }
        if any(k.startswith("upsampler.") for k in tensors):
            tensors, left_out = _strip_prefix(tensors, "upsampler.")
            fmt = "lightning-upsampler"
            if left_out:
                notes.append(f"ignored {len(left_out)} tensors outside 'upsampler.' (e.g. {left_out[0]})")
        else:
            fmt = "openclip-training-checkpoint"
    elif _tensor_dict(raw) is not None:
        tensors = _tensor_dict(raw)
        fmt = "state-dict"
    elif isinstance(raw, dict) and _tensor_dict(raw.get("model")) is not None:
        tensors = _tensor_dict(raw["model"])  # sam3.pt: {"model": {"detector.…", "tracker.…"}}
        fmt = "model-checkpoint"
    else:
        raise UserError(
            f"{path} does not hold model weights this engine knows (top level: {type(raw).__name__})"
        )

    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
        notes.append("removed the 'module.' prefix (DistributedDataParallel)")

    keys = set(tensors)
    kind, architecture = None, None
    if _looks_clip(keys):
        kind = "clip"
        fmt = "openclip-state-dict" if fmt == "state-dict" else fmt
        details.update(clip_shape_facts(tensors))
        architecture = infer_clip_architecture(tensors)
    elif _looks_sam(keys):
        kind, fmt = "sam", ("sam-state-dict" if fmt == "state-dict" else fmt)
        architecture = infer_sam_architecture(tensors)
    elif _looks_sam3(keys):
        kind = "sam3"
        fmt = "sam3-checkpoint" if fmt == "model-checkpoint" else "sam3-state-dict"
        tensors = _sam3_detector(tensors, notes)
        keys = set(tensors)
        architecture = infer_sam3_architecture(tensors)
    elif _looks_upsampler(keys):
        kind = "upsampler"
        fmt = "upsampler-state-dict" if fmt == "state-dict" else fmt
        architecture, dim = infer_upsampler_architecture(tensors)
        details["dim"] = dim
    elif fmt == "state-dict":
        fmt = "unknown-state-dict"
    ignored = sorted(keys & NON_WEIGHT_KEYS)
    if ignored:
        tensors = {k: v for k, v in tensors.items() if k not in NON_WEIGHT_KEYS}
        notes.append(f"ignored non-weight entries: {', '.join(ignored)}")
    return Checkpoint(path, container, fmt, kind, tensors, architecture, details, notes)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read ``path`` safely and identify it. UserError on refusal or unknown content."""
    path = Path(path)
    raw, container = read_raw(path)
    return identify(raw, container, path)


def describe(checkpoint: Checkpoint) -> dict:
    """A JSON-friendly summary (for ``models check``)."""
    numel = sum(int(t.numel()) for t in checkpoint.tensors.values())
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in checkpoint.tensors.values()})
    return {
        "file": str(checkpoint.path),
        "container": checkpoint.container,
        "format": checkpoint.format,
        "kind": checkpoint.kind,
        "architecture": checkpoint.architecture,
        "tensors": len(checkpoint.tensors),
        "parameters": numel,
        "dtypes": dtypes,
        "details": {
            k: v for k, v in checkpoint.details.items() if isinstance(v, (int, float, str, type(None)))
        },
        "notes": checkpoint.notes,
    }
