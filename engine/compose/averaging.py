"""Weighted parameter averaging of CLIP state dicts, and writing the result as safetensors.

θ = Σ_m w_m θ_m for every floating-point tensor, accumulated in float64 and stored in the models'
dtype; non-floating tensors must be identical across models. The output is an open_clip state dict in
safetensors with metadata naming the architecture, so ``segment --clip FILE`` can load it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from engine.errors import UserError

#: Metadata keys written into the composed file.
FORMAT = "open_clip"


def check_same_architecture(
    names: Sequence[str], architectures: Sequence[str], states: Sequence[dict]
) -> None:
    """UserError unless every model has the same architecture, keys and tensor shapes."""
    if len(states) < 2:
        raise UserError("composition needs at least two models: pass --model two or more times")
    if len(set(architectures)) != 1:
        listing = ", ".join(f"{n} ({a})" for n, a in zip(names, architectures))
        raise UserError(
            f"cannot average models of different architectures: {listing}. Compose only checkpoints of one "
            "architecture (e.g. all ViT-L-14)"
        )
    reference = states[0]
    for name, state in zip(names[1:], states[1:]):
        if set(state) != set(reference):
            extra = sorted(set(state) ^ set(reference))[:5]
            raise UserError(
                f"{name} and {names[0]} have different parameters (e.g. {extra}); cannot average them"
            )
        for key, tensor in state.items():
            if tensor.shape != reference[key].shape:
                raise UserError(
                    f"{name} and {names[0]} differ in the shape of {key}: {tuple(tensor.shape)} vs "
                    f"{tuple(reference[key].shape)}"
                )


def weighted_average(states: Sequence[dict], weights: Sequence[float]) -> dict:
    """Σ_m w_m · state_m per floating tensor (float64 accumulation); other tensors must agree."""
    if len(states) != len(weights):
        raise ValueError("one weight per model")
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            total = torch.zeros(first.shape, dtype=torch.float64)
            for state, weight in zip(states, weights):
                total += float(weight) * state[key].double()
            out[key] = total.to(first.dtype).contiguous()
        else:
            if any(not torch.equal(state[key], first) for state in states[1:]):
                raise UserError(f"the non-numeric parameter {key} differs between models; cannot average it")
            out[key] = first.clone().contiguous()
    return out


def save_composed(path: str | Path, state: dict, metadata: dict, *, overwrite: bool = False) -> Path:
    """Write ``state`` as safetensors with string ``metadata`` (values JSON-encoded unless strings);
    atomically (temporary file, then rename); refuses an existing file unless ``overwrite``."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"the composed model must be written to a .safetensors file, not {path.name}")
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in metadata.items()}
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".safetensors.part")
    os.close(handle)
    try:
        save_file(state, temporary, metadata=text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
