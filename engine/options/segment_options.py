"""``SegmentOptions``: one segment request's options, typed and checked once.

Built from the command line's arguments or a worker request's ``args`` (the same names: the worker's
JSON contract, which the QGIS plugin and its Processing algorithm send); ``to_args`` gives that JSON back.
Everything a run derives from them (the pipeline's request and settings, the method's options, the
threshold) comes from this object, reading each method's defaults from its ``MethodSpec``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from engine.errors import UserError
from engine.methods.catalogue import DEFAULT_METHOD, SPECS, method_spec
from engine.methods.spec import FIDELITIES, MethodSpec

#: Request keys that are not options (argparse's own, the worker's command name).
IGNORED_KEYS = frozenset({"quiet", "command", "func"})
MIN_TILE_SIZE = 16


def _extra_names() -> set[str]:
    return {option.name for spec in SPECS.values() for option in spec.extra}


@dataclass(frozen=True)
class SegmentOptions:
    """Options of one ``segment`` (or ``estimate``) request; None means "the default" (often the method's).

    Method-specific options (``--sam``, ``--sam-window``, ...) are in ``extra`` by their request names,
    already parsed; the method's spec declares them.
    """

    input: str | None = None
    classes: tuple[str, ...] = ()
    vocabulary: Any = None  # a file path (CLI) or the JSON form (worker: a list of classes or an object)
    method: str = DEFAULT_METHOD
    out: str | None = None
    confidence: str | None = None
    bands: str | tuple[int, ...] | None = None
    bbox: str | tuple[float, ...] | None = None
    bbox_crs: str | None = None
    gsd: float | None = None  # working metres per pixel; None: the method's rule
    device: str = "auto"
    threshold: float | None = None  # None: the vocabulary's value for this method, else the method's
    templates: Any = None
    attention: str | None = None
    clip: str | None = None
    upsampler: str | None = None
    dtype: str = "auto"  # bf16 on CPUs with bf16 matrix units and on GPUs, else float32
    random_weights: bool = False
    seed: int = 0
    overwrite: bool = False
    batch_size: int | None = None
    tile_size: int | None = None  # working pixels per read tile (memory)
    fidelity: str = "fast"  # "reference": the reference code's structure where the fast path deviates
    warp: bool = False  # warp rasters georeferenced by GCPs or RPCs (engine.pipeline)
    # Scale (engine.pipeline.partitioned, engine.distributed; resources/docs/scale.md):
    output_format: str = "gtiff"  # "gtiff" (internal overviews) or "cog"
    resume: bool = False  # blocks written as parts beside the output; a rerun continues from them
    executor: str = "local"  # "local" (this process) or "dask"
    scheduler: str | None = None  # dask: tcp://HOST:PORT, a scheduler file, or local:N
    retries: int | None = None  # dask: tries again per failed block (None: the pipeline's default)
    block_tiles: int | None = None  # read tiles per block side (resume, dask)
    extra: Mapping[str, Any] = field(default_factory=dict)

    # --- building ------------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, require_input: bool = True) -> SegmentOptions:
        """From CLI arguments or worker ``args``; unknown names are a user error (catches typos)."""
        names = {f.name for f in fields(cls)} - {"extra"}
        extras = _extra_names()
        unknown = sorted(set(raw) - names - extras - IGNORED_KEYS)
        if unknown:
            known = ", ".join(sorted(names | extras))
            raise UserError(f"unknown option(s): {', '.join(unknown)}; known: {known}")
        given = {k: v for k, v in raw.items() if k in names and v is not None}
        options = cls(
            **{k: v for k, v in given.items() if k not in _CONVERT},
            **{k: _CONVERT[k](v, k) for k, v in given.items() if k in _CONVERT},
            extra={k: v for k, v in raw.items() if k in extras and v is not None},
        )
        return options.checked(require_input)

    def checked(self, require_input: bool = True) -> SegmentOptions:
        """Validate (method, fidelity, method-specific options); parsed extras in a new object."""
        if require_input and not self.input:
            raise UserError("no input raster given")
        spec = method_spec(self.method)
        if self.fidelity not in FIDELITIES:
            raise UserError(f"--fidelity must be one of {', '.join(FIDELITIES)}, got {self.fidelity!r}")
        refused = sorted(name for name in self.extra if spec.extra_option(name) is None)
        if refused:
            flags = ", ".join("--" + name.replace("_", "-") for name in refused)
            users = sorted(s.name for s in SPECS.values() if any(o.name in refused for o in s.extra))
            raise UserError(f"{flags} only apply to --method {' or '.join(users)}, not {self.method}")
        parsed = {name: spec.extra_option(name).parse(value) for name, value in self.extra.items()}
        return _replace(self, extra=parsed)

    def to_args(self) -> dict:
        """The worker request's ``args`` for these options: only what differs from the defaults."""
        args = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                args.update(value)
            elif value != (f.default_factory() if callable(f.default_factory) else f.default):
                args[f.name] = list(value) if isinstance(value, tuple) else value
        return args

    # --- what a run derives ------------------------------------------------------------------------
    @property
    def spec(self) -> MethodSpec:
        return method_spec(self.method)

    @property
    def reference(self) -> bool:
        return self.fidelity == "reference"

    def extra_value(self, name: str) -> Any:
        """A method-specific option: the request's, else the reference mode's, else None."""
        if name in self.extra:
            return self.extra[name]
        return self.spec.reference.get(name) if self.reference else None

    def method_extra(self) -> dict:
        """``MethodOptions.extra``: the method's own options by the keys its factory reads."""
        extra = {}
        for option in self.spec.extra:
            value = self.extra_value(option.name)
            if value is not None:
                extra[option.key] = value
        return extra

    @property
    def crop_edge(self) -> str:
        """ "shift": the last crop moves back inside the raster; "pad": it is padded with black."""
        return str(self.spec.reference.get("crop_edge", "shift")) if self.reference else "shift"

    def vocabulary_of(self):
        """The Vocabulary: ``classes``, a ``vocabulary`` file (CLI) or its JSON (worker)."""
        from engine.vocabulary import build_vocabulary

        file, data = self.vocabulary, None
        if file is not None and not isinstance(file, str):
            file, data = None, self.vocabulary
        classes = list(self.classes)
        if not classes and file is None and data is None and self.spec.default_classes is not None:
            classes = list(self.spec.default_classes(self.extra))
        return build_vocabulary(classes, file, data)

    def threshold_for(self, vocabulary=None) -> float:
        """The run's threshold: the request's, else the method options' (a preset), else the vocabulary's
        for this method, else the method's."""
        if self.threshold is not None:
            return self.threshold
        from_extra = self.spec.threshold_from_extra
        if from_extra is not None and (value := from_extra(self.extra)) is not None:
            return float(value)
        by_method = getattr(vocabulary, "method_thresholds", None) or {}
        if self.method in by_method:
            return float(by_method[self.method])
        return self.spec.threshold.default

    def gsd_for(self, spec: MethodSpec) -> float | None:
        """The request's working GSD, else the one its method options imply (a trained model's), else
        None (the method's ``gsd_factor`` rule)."""
        if self.gsd is not None or spec.gsd_from_extra is None:
            return self.gsd
        return spec.gsd_from_extra(self.extra)

    def crop_window(self) -> tuple[int, int]:
        """(crop size, crop stride) in working pixels the method will use, known before it loads: its
        options' (a trained model's crop), else the spec's. Plans and estimates count these windows."""
        spec = self.spec
        window = spec.window_from_extra(self.extra) if spec.window_from_extra is not None else None
        return window or (spec.crop_size, spec.crop_stride)

    def segment_request(self, vocabulary=None):
        """The pipeline's SegmentRequest (what to read and write, at which working resolution)."""
        from engine.pipeline.segment import SegmentRequest

        spec = self.spec
        more = {"warp": True} if self.warp else {}  # only the GCP/RPC path knows the field
        return SegmentRequest(
            input=str(self.input),
            out=self.out,
            confidence=self.confidence,
            bands=self.bands,
            bbox=self.bbox,
            bbox_crs=self.bbox_crs,
            gsd=self.gsd_for(spec),
            gsd_factor=spec.gsd_factor,
            fit_edge=spec.reference.get("fit_edge") if self.reference else None,
            threshold=self.threshold_for(vocabulary),
            overwrite=self.overwrite,
            output_format=self.output_format,
            **more,
        )

    def pipeline_settings(self):
        from engine.pipeline.segment import PipelineSettings

        settings = {"threshold_kind": self.spec.threshold.kind, "crop_edge": self.crop_edge}
        if self.batch_size is not None:
            settings["batch_size"] = self.batch_size
        if self.tile_size is not None:
            settings["tile_working"] = self.tile_size
        return PipelineSettings(**settings)

    def method_options(self, device: str):
        """What the method's factory gets (MethodOptions); ``device`` already resolved."""
        from engine.methods.registry import MethodOptions, random_weights_requested

        return MethodOptions(
            clip=self.clip,
            upsampler=self.upsampler,
            attention=self.attention,
            templates=self.templates,
            dtype=self.dtype or "auto",
            device=device,
            random_weights=random_weights_requested(self.random_weights),
            seed=self.seed,
            extra=self.method_extra(),
        )

    def describe(self) -> dict:
        """For the sidecar: the mode, the method's rules and what the reference mode changed."""
        spec = self.spec
        return {
            "fidelity": self.fidelity,
            "reference_changes": list(spec.reference_notes) if self.reference else [],
            "threshold_kind": spec.threshold.kind,
            "threshold_meaning": spec.threshold.meaning,
            "crop_edge": self.crop_edge,
        }


def _replace(options: SegmentOptions, **changes) -> SegmentOptions:
    from dataclasses import replace

    return replace(options, **changes)


def _number(kind):
    def convert(value, name):
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise UserError(f"--{name.replace('_', '-')} must be a number, got {value!r}") from None
        if kind is int and number != float(value):
            raise UserError(f"--{name.replace('_', '-')} must be a whole number, got {value!r}")
        return number

    return convert


def _threshold(value, name):
    number = _number(float)(value, name)
    if not 0.0 <= number <= 1.0:
        raise UserError(f"bad --threshold {value}: use a value between 0 and 1")
    return number


def _tile_size(value, name):
    number = _number(int)(value, name)
    if number < MIN_TILE_SIZE:
        raise UserError(f"--tile-size must be at least {MIN_TILE_SIZE} working pixels, got {value}")
    return number


def _sequence(value, name):
    if isinstance(value, str):
        return value
    if not isinstance(value, (list, tuple)):
        raise UserError(f"--{name.replace('_', '-')} must be text or a list, got {value!r:.80}")
    return tuple(value)


def _classes(value, name):
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise UserError(f"--class must be a class name or a list of them (text), got {value!r:.80}")
    return tuple(value)


def _flag(value, name):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _text(value, name):
    return str(value)


_CONVERT = {
    "input": _text,
    "out": _text,
    "confidence": _text,
    "classes": _classes,
    "bands": _sequence,
    "bbox": _sequence,
    "gsd": _number(float),
    "threshold": _threshold,
    "seed": _number(int),
    "batch_size": _number(int),
    "tile_size": _tile_size,
    "random_weights": _flag,
    "overwrite": _flag,
    "warp": _flag,
    "resume": _flag,
    "retries": lambda value, name: _at_least(value, name, 0),
    "block_tiles": lambda value, name: _at_least(value, name, 1),
    "output_format": lambda value, name: _output_format(value),
    "executor": lambda value, name: _choice(value, name, ("local", "dask")),
    "scheduler": _text,
}


def _at_least(value, name, low: int) -> int:
    number = _number(int)(value, name)
    if number < low:
        raise UserError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
    return number


def _choice(value, name, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise UserError(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, got {value!r}")
    return text


def _output_format(value):
    from engine.raster.finish import output_format

    return output_format(str(value))
