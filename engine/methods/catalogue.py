"""Every method's spec by name, without torch: one line per method (its spec lives beside its code)."""

from __future__ import annotations

from engine.errors import UserError
from engine.methods.aeroseg.spec import AEROSEG
from engine.methods.reseg.spec import RESEG_CLIP
from engine.methods.segearth_ov3.spec import SEGEARTH_OV3
from engine.methods.segearth_ov_spec import SEGEARTH_OV
from engine.methods.spec import MethodSpec

SPECS: dict[str, MethodSpec] = {spec.name: spec for spec in (SEGEARTH_OV, RESEG_CLIP, SEGEARTH_OV3, AEROSEG)}
DEFAULT_METHOD = SEGEARTH_OV.name


def method_spec(name: str) -> MethodSpec:
    """The spec of method ``name``; an unknown name is a user error listing the known ones."""
    spec = SPECS.get(name)
    if spec is None:
        raise UserError(f"unknown method {name!r}: use one of {', '.join(sorted(SPECS))}")
    return spec
