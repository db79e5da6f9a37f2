"""Importing Meta's ``sam3`` package where it cannot import itself as shipped.

``import sam3`` runs its model builder, which imports the video tracker, whose distance-transform module
imports Triton at the top. Triton exists only beside CUDA builds of PyTorch; on a CPU-only install the
import fails although the image model never calls that kernel. Where Triton is missing, the tracker's
distance-transform module is replaced (before ``sam3`` loads) by one whose function says why it cannot run.
Nothing else is faked: Triton itself stays absent, so PyTorch's own checks for it are not misled.

A missing ``sam3`` becomes a ``UserError`` saying how to install it, never an ImportError traceback.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings

from engine.errors import UserError

_EDT_MODULE = "sam3.model.edt"

INSTALL_HINT = (
    "SegEarth-OV3 needs Meta's 'sam3' package: in QGIS use the plugin's 'Set up engine' again, or run "
    "'pip install -c constraints.txt sam3' in the engine's environment"
)


def _edt_unavailable(*args, **kwargs):
    raise RuntimeError("SAM 3's video tracker needs Triton (CUDA builds of PyTorch); not used for images")


def _install_edt_stand_in() -> None:
    if _EDT_MODULE in sys.modules or importlib.util.find_spec("triton") is not None:
        return
    stand_in = types.ModuleType(_EDT_MODULE)
    stand_in.edt_triton = _edt_unavailable
    stand_in.__doc__ = "Stand-in for sam3.model.edt where Triton is missing (engine.methods.segearth_ov3)."
    sys.modules[_EDT_MODULE] = stand_in


def sam3_available() -> bool:
    """Whether the ``sam3`` package is installed (without importing it)."""
    return importlib.util.find_spec("sam3") is not None


def import_sam3():
    """The ``sam3`` package, imported so that it works without Triton; UserError when it is missing."""
    if not sam3_available():
        raise UserError(INSTALL_HINT)
    _install_edt_stand_in()
    try:
        with warnings.catch_warnings():
            # Its video modules decorate functions with CUDA autocast at import: noise on a CPU machine.
            warnings.filterwarnings("ignore", message="CUDA is not available", category=UserWarning)
            import sam3
    except ImportError as exc:
        raise UserError(f"{INSTALL_HINT} (import failed: {exc})") from exc
    return sam3
