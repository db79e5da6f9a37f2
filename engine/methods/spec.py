"""What a method declares about itself, without torch: its defaults, its own options, its reference mode.

A method is one ``MethodSpec`` (in a torch-free module beside its code) plus one line in
``engine.methods.catalogue``. The command line, the worker and the plugin's requests all read the
defaults from here, so a method's threshold, working resolution, window and templates are stated once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import UserError

#: Threshold kinds (engine.pipeline.scoring): the winning class's probability after the softmax at the
#: method's logit scale, or the raw-cosine margin between the best and the second-best class, or the
#: winning class's own score where the method's maps are probabilities already (SegEarth-OV3).
THRESHOLD_KINDS = ("probability", "margin", "score")
FIDELITIES = ("fast", "reference")


@dataclass(frozen=True)
class ExtraOption:
    """An option only some methods understand; ``name`` is the request key (``--name-with-dashes``)."""

    name: str
    key: str  # its key in MethodOptions.extra (what the method's factory reads)
    help: str
    metavar: str = "VALUE"
    parse: Callable[[Any], Any] = str  # request value (CLI text or JSON) → the value the factory gets

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class ThresholdRule:
    """What a run's threshold means for a method, and its default when nobody sets one."""

    kind: str  # one of THRESHOLD_KINDS
    default: float  # 0: no pixel is left unclassified
    meaning: str  # one sentence for users (the dock shows it beside the threshold)

    def __post_init__(self) -> None:
        if self.kind not in THRESHOLD_KINDS:
            raise ValueError(f"threshold kind {self.kind!r} is not one of {THRESHOLD_KINDS}")


@dataclass(frozen=True)
class MethodSpec:
    """A method's published defaults and its own options.

    ``gsd_factor``: the working resolution when none is requested is the raster's pixel size × this.
    ``reference``: option values that ``--fidelity reference`` sets (the reference code's own structure
    where the fast path deviates for speed), unless the request sets them itself; ``reference_notes``
    says what they change and what still differs.
    """

    name: str
    label: str
    factory: str  # "module:function" taking (MethodOptions, ModelCache); imported only to build the method
    crop_size: int  # working pixels per crop edge
    crop_stride: int
    gsd_factor: float
    gsd_rule: str  # the default working resolution in words (sidecar, docs)
    threshold: ThresholdRule
    logit_scale: float
    templates: str  # the default prompt templates in words
    extra: tuple[ExtraOption, ...] = ()
    reference: Mapping[str, Any] = field(default_factory=dict)
    reference_notes: tuple[str, ...] = ()
    #: the threshold implied by the request's own method options (a preset), or None; read after an
    #: explicit --threshold and before the vocabulary's.
    threshold_from_extra: Callable[[Mapping[str, Any]], float | None] | None = None
    #: the classes (``--class`` arguments) a request without any gets from its own method options, e.g.
    #: a trained model's classes (AerOSeg); None: a request must name its classes.
    default_classes: Callable[[Mapping[str, Any]], tuple[str, ...]] | None = None
    #: the working resolution (metres per pixel) implied by the request's method options when the request
    #: sets none, e.g. the GSD a trained model learnt at (AerOSeg); None: ``gsd_factor`` applies.
    gsd_from_extra: Callable[[Mapping[str, Any]], float | None] | None = None
    #: (crop size, crop stride) in working pixels implied by the request's method options, e.g. a trained
    #: model's own crop (AerOSeg); None: ``crop_size`` / ``crop_stride`` apply.
    window_from_extra: Callable[[Mapping[str, Any]], tuple[int, int] | None] | None = None

    def extra_option(self, name: str) -> ExtraOption | None:
        return next((option for option in self.extra if option.name == name), None)

    def create(self, options, models):
        """Build the method (imports its module, and torch, only now)."""
        from importlib import import_module

        module, _, function = self.factory.partition(":")
        return getattr(import_module(module), function)(options, models)


def positive_pixels(flag: str) -> Callable[[Any], int]:
    """A parser for a positive whole number of pixels (``flag`` names it in the message)."""

    def parse(value: Any) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise UserError(f"{flag} must be a whole number of pixels, got {value!r}") from None
        if number <= 0 or number != float(value):
            raise UserError(f"{flag} must be a positive whole number of pixels, got {value!r}")
        return number

    return parse
