"""Make ``import torchvision`` work when its compiled operators cannot load.

Why: on the build machines the only torchvision wheel on the registry is a CUDA build; with the CPU
torch its ``_C`` extension fails to load and ``import torchvision`` dies with
``operator torchvision::nms does not exist``. That breaks ``open_clip`` and ``segment_anything``,
which import torchvision. On a user's machine with a matching torchvision nothing here acts.

What: an import hook that runs just before torchvision is first imported. If torchvision's compiled
library loads, it does nothing. Otherwise it defines the ``torchvision::nms`` and ``torchvision::qnms``
operators with a pure-PyTorch non-maximum suppression (all that SAM's mask generator needs) and lets
``torchvision.ops.nms`` use them. Every other compiled operator still raises torchvision's own error.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

_STATE = {"mode": None}  # "native" | "pure-pytorch" once decided


def pure_nms(boxes, scores, iou_threshold: float):
    """Greedy non-maximum suppression in plain PyTorch.

    boxes: (N, 4) as x1, y1, x2, y2; scores: (N,). Returns the int64 indices kept, highest score first,
    exactly as ``torchvision.ops.nms`` defines it (a box is dropped when its IoU with a kept, higher
    scoring box is strictly greater than ``iou_threshold``).
    """
    import torch

    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    boxes = boxes[order].to(torch.float64 if boxes.dtype == torch.float64 else torch.float32)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    # The full IoU matrix is vectorised; only the greedy sweep is sequential.
    ix1 = torch.maximum(x1[:, None], x1[None, :])
    iy1 = torch.maximum(y1[:, None], y1[None, :])
    ix2 = torch.minimum(x2[:, None], x2[None, :])
    iy2 = torch.minimum(y2[:, None], y2[None, :])
    inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
    iou = inter / (areas[:, None] + areas[None, :] - inter)
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def _compiled_library_path() -> Path | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = folder / f"_C{suffix}"
        if candidate.exists():
            return candidate
    return None


def compiled_ops_load() -> bool:
    """True when torchvision's own compiled operators load into this torch."""
    import torch

    path = _compiled_library_path()
    if path is None:
        return False
    try:
        torch.ops.load_library(str(path))
    except (OSError, RuntimeError, ImportError):
        return False
    return True


def _define_pure_ops() -> None:
    import torch

    library = torch.library.Library("torchvision", "DEF")
    for name in ("nms", "qnms"):
        library.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.impl(name, pure_nms, "CompositeExplicitAutograd")
    _STATE["library"] = library  # keep the registration alive


def _after_torchvision_import() -> None:
    boxes = sys.modules.get("torchvision.ops.boxes")
    if boxes is not None:
        # nms is now provided; other compiled ops keep failing with torchvision's own message.
        boxes._assert_has_ops = lambda: None


def prepare() -> str:
    """Decide, once, how torchvision gets its operators. Returns "native" or "pure-pytorch"."""
    if _STATE["mode"] is None:
        if compiled_ops_load():
            _STATE["mode"] = "native"
        else:
            _define_pure_ops()
            _STATE["mode"] = "pure-pytorch"
    return _STATE["mode"]


def mode() -> str | None:
    return _STATE["mode"]


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    """Runs :func:`prepare` the first time anything imports torchvision, then steps aside."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        if prepare() == "pure-pytorch":
            original_exec = spec.loader.exec_module

            def exec_module(module):
                original_exec(module)
                _after_torchvision_import()

            spec.loader.exec_module = exec_module
        return spec


def install_import_hook() -> None:
    """Install the hook (idempotent); if torchvision is already imported, patch it now."""
    if "torchvision" in sys.modules:
        return
    if not any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionFinder())
