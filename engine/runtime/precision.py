"""Which floating-point type the backbone runs in: fast reduced precision where the hardware has it.

- CUDA: bfloat16 where the GPU supports it (Ampere and later: same range as float32, tensor cores),
  else float16 (tensor cores on Volta/Turing).
- CPU: bfloat16 when the CPU has bf16 matrix instructions (Intel AMX or AVX512-BF16, e.g. Sapphire
  Rapids, AMD Zen 4): measured on such a 2-core machine, a 2048² matmul runs ≈ 6× faster in bf16 than in
  float32. Without them bf16 is emulated and slower than float32, and float16 is never faster on CPUs.
- MPS: float16 (Apple GPUs run half precision at about twice the float32 rate).
"""

from __future__ import annotations

import torch

from engine.errors import UserError

DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
#: The name that asks for ``choose_dtype``.
AUTO = "auto"


def torch_dtype(name: str, device: str = "cpu") -> torch.dtype:
    """The torch dtype for a ``--dtype`` name; "auto" picks by device (``choose_dtype``)."""
    if name not in (AUTO, *DTYPE_NAMES):
        raise UserError(f"unknown --dtype {name!r}: use one of {AUTO}, {', '.join(DTYPE_NAMES)}")
    return resolve_dtype(name, device)


def cpu_has_bf16_matrix_units() -> bool:
    """True if this CPU executes bf16 dot products natively (AMX tiles or AVX512-BF16)."""
    cpu = torch.cpu
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:  # a probe that cannot run on this build counts as "no"
            continue
    return False


def choose_dtype(device: str | torch.device) -> torch.dtype:
    """The fastest dtype for a CLIP backbone on ``device`` whose results still track float32's."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "mps":
        return torch.float16
    if kind == "cpu" and cpu_has_bf16_matrix_units():
        return torch.bfloat16
    return torch.float32


def resolve_dtype(dtype: torch.dtype | str | None, device: str | torch.device) -> torch.dtype:
    """A torch dtype from a dtype, a name in ``DTYPE_NAMES``, or "auto"/None (``choose_dtype(device)``)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == AUTO:
        return choose_dtype(device)
    if dtype not in DTYPE_NAMES:
        raise UserError(f"unknown dtype {dtype!r}: use one of {AUTO}, {', '.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[dtype]
