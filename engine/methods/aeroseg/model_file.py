"""Trained AerOSeg models on disk: ``MODEL.safetensors`` (tensors only, never pickled code) plus
``MODEL.aeroseg.json`` (the same metadata, readable without torch, so the QGIS plugin can list models).

The file holds only what training changed: the head and CLIP's query/value projections. The frozen base
weights (CLIP's keys and everything else, SAM) are rebuilt from their registry name or file, checked
against the checksums recorded at training time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

from engine.errors import UserError
from engine.methods.aeroseg.architecture import AerOSegArchitecture

FORMAT = "rs-ovseg-aeroseg"
FORMAT_VERSION = 1
METADATA_KEY = "aeroseg"


def metadata_path(model: str | Path) -> Path:
    return Path(model).with_suffix(".aeroseg.json")


def tensor_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over a module's state (names, shapes, dtypes, bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _write_atomically(path: Path, write) -> None:
    """``write(temporary_path)`` then rename over ``path``: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """Tensors and JSON metadata into a safetensors file, atomically."""
    from safetensors.torch import save_file

    plain = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    text = {METADATA_KEY: json.dumps(metadata, sort_keys=True), "format": FORMAT}
    _write_atomically(Path(path), lambda temporary: save_file(plain, temporary, metadata=text))


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a file written by ``save_tensors``; anything else is a UserError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"AerOSeg model not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{path} is not a safetensors file ({error})") from None
    if header.get("format") != FORMAT or METADATA_KEY not in header:
        raise UserError(f"{path} is a safetensors file but not an AerOSeg model trained by this engine")
    return tensors, json.loads(header[METADATA_KEY])


def model_state(model) -> dict[str, torch.Tensor]:
    """The trained tensors of an ``AerOSeg``: ``head.*`` (all of it) and ``clip.*`` (q and v only)."""
    state = {f"head.{k}": v for k, v in model.head.state_dict().items()}
    state.update({f"clip.{n}": p.detach() for n, p in model.clip.named_parameters() if p.requires_grad})
    return state


def load_model_state(model, tensors: dict[str, torch.Tensor], label: str) -> None:
    """Put ``model_state``'s tensors back, strictly: every one expected, none missing, shapes equal."""
    head = {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}
    clip = {k[5:]: v for k, v in tensors.items() if k.startswith("clip.")}
    wanted = {n: p for n, p in model.clip.named_parameters() if p.requires_grad}
    if set(clip) != set(wanted):
        raise UserError(f"{label}: its CLIP projections do not fit this architecture's CLIP")
    try:
        model.head.load_state_dict(head, strict=True)
    except RuntimeError as error:
        raise UserError(f"{label}: its head does not fit this architecture ({str(error)[:300]})") from None
    with torch.no_grad():
        for name, parameter in wanted.items():
            if clip[name].shape != parameter.shape:
                raise UserError(f"{label}: CLIP tensor {name} has shape {tuple(clip[name].shape)}")
            parameter.copy_(clip[name])


def save_model(path: str | Path, model, metadata: dict) -> None:
    """MODEL.safetensors and MODEL.aeroseg.json (metadata only), both written atomically."""
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **metadata}
    save_tensors(path, model_state(model), full)
    text = json.dumps(full, indent=2, sort_keys=True)
    _write_atomically(metadata_path(path), lambda temporary: Path(temporary).write_text(text))


def read_metadata(path: str | Path) -> dict:
    """A model's metadata: from the safetensors header (authoritative)."""
    return read_tensors(path)[1]


def architecture_of(metadata: dict) -> AerOSegArchitecture:
    return AerOSegArchitecture.from_json(metadata["architecture"])
