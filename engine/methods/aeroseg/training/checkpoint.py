"""Training checkpoints in safetensors (no pickle): the trained tensors, AdamW's state, the sampler's
generator, the step; and a fingerprint of everything that must match for ``--resume`` to continue the
same run bit-for-bit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from engine.errors import UserError
from engine.methods.aeroseg.model_file import load_model_state, model_state, read_tensors, save_tensors


def checkpoint_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".checkpoint.safetensors")


def run_fingerprint(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def save_checkpoint(path: Path, model, optimizer, generator: torch.Generator, step: int, info: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model_state(model).items()}
    state = optimizer.state_dict()
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"optim.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    tensors["rng.sampler"] = generator.get_state()
    save_tensors(
        path, tensors, {**info, "step": step, "param_groups": state["param_groups"], "kind": "checkpoint"}
    )


def load_checkpoint(
    path: Path, model, optimizer, generator: torch.Generator, fingerprint: str
) -> tuple[int, dict]:
    """Restore everything; returns (step reached, the checkpoint's info)."""
    if not path.is_file():
        raise UserError(f"--resume: no checkpoint {path} (it is written every --checkpoint-every steps)")
    tensors, info = read_tensors(path)
    if info.get("kind") != "checkpoint":
        raise UserError(f"{path} is not a training checkpoint")
    if info.get("fingerprint") != fingerprint:
        raise UserError(
            f"--resume: {path} belongs to another run (other images, labels, classes, architecture or "
            "settings); start afresh without --resume, or repeat the first run's options"
        )
    load_model_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(path))
    state: dict = {"state": {}, "param_groups": info["param_groups"]}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state["state"].setdefault(int(index), {})[key] = value
    optimizer.load_state_dict(state)
    generator.set_state(tensors["rng.sampler"])
    return int(info["step"]), info
