"""Read checkpoint files safely and tell what they hold, from tensor names and shapes alone.

Nothing in a file is ever executed. Containers:
- safetensors: a JSON header and raw tensors (read with ``safetensors``).
- ``torch.save`` files (zip or legacy): ``torch.load(weights_only=True)``, whose unpickler only builds
  tensors and plain containers and refuses anything else.
- TorchScript archives (OpenAI's ``ViT-B-16.pt``): ``torch.load`` refuses them under
  ``weights_only`` and ``torch.jit.load`` would run the archive's code, so ``_TorchScriptUnpickler``
  reads ``data.pkl`` with a whitelist: module objects become inert attribute holders, tensors are
  rebuilt from the archive's raw storages, anything else is refused.

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

import pickle
import re
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import UserError

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


def _torchscript_root(archive: zipfile.ZipFile) -> str | None:
    """The archive's root folder if it is a TorchScript archive (has code/ or constants.pkl)."""
    names = archive.namelist()
    data = [n for n in names if n.endswith("/data.pkl")]
    if not data:
        return None
    root = data[0][: -len("data.pkl")]
    if any(n.startswith(root + "code/") or n == root + "constants.pkl" for n in names):
        return root
    return None


class _ScriptObject:
    """Stand-in for a TorchScript module object: keeps its attributes, runs nothing."""

    type_name = "?"

    def __init__(self, *args):
        self.attributes: dict = {}

    def __setstate__(self, state):
        self.attributes = dict(state) if isinstance(state, dict) else {"_state": state}


_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "DoubleStorage": "float64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


@dataclass(frozen=True)
class _StorageType:
    dtype_name: str


def _identity_tag(value, *_type):
    return value


class _TorchScriptUnpickler(pickle.Unpickler):
    """Whitelisting unpickler for TorchScript ``data.pkl``: builds tensors and inert objects only."""

    def __init__(self, payload: bytes, archive: zipfile.ZipFile, root: str):
        import io

        super().__init__(io.BytesIO(payload))
        self.archive = archive
        self.root = root
        self.classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            qualified = f"{module}.{name}"
            if qualified not in self.classes:
                self.classes[qualified] = type(name, (_ScriptObject,), {"type_name": qualified})
            return self.classes[qualified]
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            import torch._utils

            return torch._utils._rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch.jit._pickle" and name.startswith("build_"):
            return list
        if module == "torch.jit._pickle" and name == "restore_type_tag":
            return _identity_tag
        raise pickle.UnpicklingError(f"refused global {module}.{name}: not a weight")

    def persistent_load(self, pid):
        import torch

        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"refused persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType) or not key.isdigit():
            raise pickle.UnpicklingError("refused storage reference")
        dtype = getattr(torch, storage_type.dtype_name)
        raw = bytearray(self.archive.read(f"{self.root}data/{key}"))
        untyped = (
            torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else torch.UntypedStorage(0)
        )
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _flatten_script_object(obj, prefix: str, out: dict) -> None:
    import torch

    for name, value in obj.attributes.items():
        key = f"{prefix}{name}"
        if isinstance(value, torch.Tensor):
            out[key] = value
        elif isinstance(value, _ScriptObject):
            _flatten_script_object(value, key + ".", out)


def _read_torchscript(path: Path, archive: zipfile.ZipFile, root: str) -> dict:
    try:
        top = _TorchScriptUnpickler(archive.read(root + "data.pkl"), archive, root).load()
    except (pickle.UnpicklingError, AttributeError, KeyError, TypeError, ValueError, EOFError) as error:
        raise UserError(
            f"refused to read {path}: TorchScript archive with unexpected content ({error})"
        ) from None
    if not isinstance(top, _ScriptObject):
        raise UserError(f"refused to read {path}: TorchScript archive does not hold a module")
    tensors: dict = {}
    _flatten_script_object(top, "", tensors)
    return tensors


#: What a weight file must be, said in every refusal of a file that is not one.
EXPECTED_CONTAINERS = (
    "a safetensors file (.safetensors) or a PyTorch checkpoint (.pt, .pth, .bin, .ckpt: a torch.save "
    "zip archive, a legacy torch.save file or an OpenAI TorchScript archive)"
)
_ZIP_MAGIC = b"PK\x03\x04"
# torch.save's legacy format: a pickle (protocol 2+) whose first object is torch's magic number.
_PICKLE_PROTOCOLS = tuple(bytes([0x80, n]) for n in range(2, 6))


def _content_hint(head: bytes) -> str:
    """What a non-checkpoint file looks like it is, from its first bytes (for the message)."""
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "it is a web page (HTML): a download that was redirected to a login or error page"
    if text.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the weights it points to: fetch them with `git lfs pull`"
    if text.startswith((b"{", b"[")):
        return "it is JSON text"
    if head.startswith(b"\x89HDF"):
        return "it is an HDF5 file (Keras/TensorFlow weights)"
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed: unpack it first"
    return f"its first bytes are {head[:8].hex(' ')}, which no weight format starts with"


def identify_container(path: str | Path) -> str:
    """Which container ``path`` is, judged from its first bytes before any loader touches it.

    Returns ``"safetensors"``, ``"zip"`` (torch.save archive or TorchScript) or ``"torch-legacy"``; a
    missing path, a folder, an empty file or anything else raises a UserError saying what the file is
    not and what is expected (``models check`` and every loader give the same diagnosis).
    """
    path = Path(path)
    if path.is_dir():
        inside = sorted(
            p.name for p in path.iterdir() if p.suffix in (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
        )
        hint = f" (it holds {', '.join(inside[:3])}: give one of them)" if inside else ""
        raise UserError(f"{path} is a folder, not a checkpoint file{hint}; expected {EXPECTED_CONTAINERS}")
    if not path.is_file():
        raise UserError(f"checkpoint file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise UserError(
            f"{path} is empty (0 bytes), not a checkpoint: an interrupted download or copy? "
            f"Expected {EXPECTED_CONTAINERS}"
        )
    with open(path, "rb") as handle:
        head = handle.read(64)
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < header_len <= size - 8:
            return "safetensors"
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_PICKLE_PROTOCOLS):
        return "torch-legacy"
    named = f"named {path.suffix} but is " if path.suffix else ""
    raise UserError(
        f"{path} is {named}not a checkpoint: {_content_hint(head)}. Expected {EXPECTED_CONTAINERS}"
    )


def read_raw(path: str | Path) -> tuple[object, str]:
    """The file's top-level object, read without running any code; and its container name.

    The container is identified first (``identify_container``); refusals and unreadable files raise
    UserError naming the file.
    """
    path = Path(path)
    container = identify_container(path)
    if container == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), "safetensors"
        except Exception as error:  # safetensors raises its own error types
            raise UserError(f"cannot read {path} as safetensors: {error}") from None
    import torch

    is_zip = container == "zip"
    if is_zip:
        try:
            with zipfile.ZipFile(path) as archive:
                root = _torchscript_root(archive)
                if root is not None:
                    return _read_torchscript(path, archive, root), "torchscript"
        except zipfile.BadZipFile as error:
            raise UserError(
                f"{path} is a damaged zip archive, not a readable checkpoint ({error}): an incomplete "
                f"download or copy? Expected {EXPECTED_CONTAINERS}"
            ) from None
    try:
        if is_zip and not path.name.endswith(".safetensors"):
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        else:  # a file object: given a name ending .safetensors, torch.load hands it to safetensors
            with open(path, "rb") as handle:
                obj = torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"refused to read {path}: it holds pickled objects that would run code when loaded, which "
            f"plain weight files never need ({first}). Use a checkpoint from the official source."
        ) from None
    except Exception as error:  # torch raises many types for damaged files; none of them run code
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"{path} is not a readable PyTorch checkpoint ({detail}): damaged or incomplete? "
            f"Expected {EXPECTED_CONTAINERS}"
        ) from None
    return obj, "torch-zip" if is_zip else "torch-legacy"


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
