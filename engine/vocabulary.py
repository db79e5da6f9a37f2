"""The user's vocabulary: classes, their synonyms, display colours and optional thresholds.

Every synonym of every class is one text query for the model; a class's score is the best score of its
synonyms. Class indices in output rasters are 1..N in vocabulary order; 0 means unclassified/nodata.

Three input forms:
- command line: ``--class "building,roof,house"`` (commas separate synonyms, the first is the name);
- JSON: a list of ``{"name": ..., "synonyms": [...], "colour": "#rrggbb" | [r, g, b], "threshold": 0.2}``
  (only ``name`` is required; ``{"classes": [...]}`` is accepted too). A class may give whole prompts
  instead, ``"prompts": ["Aerial photo of an asphalt road in the city"]``: each is one query used as
  written, without templates, and the name is then only the label. The object form may carry
  ``"method_thresholds": {"segearth-ov": 0.1}``, the run threshold per method (a threshold's meaning
  depends on the method: engine.methods.spec.ThresholdRule); its older ``"threshold": 0.1`` is read as
  SegEarth-OV's, the method whose dataset thresholds the presets carry;
- SegEarth-OV's plain text (``configs/cls_*.txt``): one class per line, commas separate synonyms.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import UserError

Colour = tuple[int, int, int]

# Distinct, colour-blind-aware colours (Okabe-Ito first, then Tableau-like); cycles past its length.
DEFAULT_PALETTE: tuple[Colour, ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (128, 128, 128),
    (141, 211, 199),
    (190, 186, 218),
    (251, 128, 114),
    (128, 177, 211),
    (253, 180, 98),
    (179, 222, 105),
    (252, 205, 229),
    (188, 128, 189),
)
UNCLASSIFIED_NAME = "unclassified"


@dataclass(frozen=True)
class ClassSpec:
    """One output class. ``synonyms`` (template-expanded queries) starts with ``name`` unless the class
    gives literal ``prompts``; ``threshold`` None means the run's default."""

    name: str
    synonyms: tuple[str, ...]
    colour: Colour
    threshold: float | None = None
    prompts: tuple[str, ...] = ()  # whole prompts, queried as written (no templates)

    def to_json(self) -> dict:
        out = {"name": self.name, "synonyms": list(self.synonyms), "colour": colour_to_hex(self.colour)}
        if self.prompts:
            out["prompts"] = list(self.prompts)
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return out

    def queries(self) -> list[str]:
        return [*self.synonyms, *self.prompts]


@dataclass(frozen=True)
class Vocabulary:
    """An ordered, non-empty list of classes with unique names."""

    classes: tuple[ClassSpec, ...] = field(default_factory=tuple)
    #: Run threshold per method name, e.g. a benchmark preset's SegEarth-OV probability threshold.
    method_thresholds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.classes:
            raise UserError("the vocabulary is empty: give at least one --class or a --vocabulary file")
        if len(self.classes) > 255:
            raise UserError(f"too many classes ({len(self.classes)}): the class raster holds at most 255")
        seen: dict[str, str] = {}
        for spec in self.classes:
            key = spec.name.casefold()
            if key in seen:
                raise UserError(
                    f"duplicate class {spec.name!r} in the vocabulary: class names must be unique"
                )
            seen[key] = spec.name

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def queries(self) -> list[str]:
        """Every synonym, then every literal prompt, of every class in class order: the model's queries."""
        return [q for c in self.classes for q in c.queries()]

    def literal_queries(self) -> list[bool]:
        """Per query: True for a literal prompt (encoded as written), False for a templated synonym."""
        return [flag for c in self.classes for flag in [False] * len(c.synonyms) + [True] * len(c.prompts)]

    def query_to_class(self) -> list[int]:
        """For each query, the 0-based index of its class (output value = index + 1)."""
        return [i for i, c in enumerate(self.classes) for _ in c.queries()]

    def thresholds(self, default: float) -> list[float]:
        """Per-class probability threshold: the class's own, else ``default``."""
        return [default if c.threshold is None else c.threshold for c in self.classes]

    def category_names(self) -> list[str]:
        """Names indexed by raster value: 0 is unclassified."""
        return [UNCLASSIFIED_NAME, *self.names]

    def to_json(self) -> list[dict]:
        return [c.to_json() for c in self.classes]

    def merged(self, other: Vocabulary | None) -> Vocabulary:
        if other is None:
            return self
        return Vocabulary(self.classes + other.classes, {**self.method_thresholds, **other.method_thresholds})


def parse_colour(value: object, where: str) -> Colour:
    """``"#rrggbb"`` or ``[r, g, b]`` (0..255) → ``(r, g, b)``."""
    if isinstance(value, str):
        text = value.strip().removeprefix("#")
        if len(text) == 6:
            try:
                return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
            except ValueError:
                pass
    elif (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        return (value[0], value[1], value[2])
    raise UserError(f'bad colour {value!r} for {where}: use "#rrggbb" or [r, g, b] with values 0..255')


def colour_to_hex(colour: Colour) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


def _plain_text(word: str, where: str) -> str:
    """``word`` unless it holds a control character (NUL, BEL, DEL, ...): GDAL's category names end at a
    NUL and drop others, so the class raster would name the class differently from the sidecar."""
    bad = next((c for c in word if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise UserError(
            f"the class name {word!r:.80} in {where} holds the control character U+{ord(bad):04X}: "
            "class names are plain text"
        )
    return word


def _clean_synonyms(parts: Iterable[str], where: str) -> tuple[str, ...]:
    words: list[str] = []
    for part in parts:
        word = _plain_text(" ".join(str(part).split()), where)
        if word and word not in words:
            words.append(word)
    if not words:
        raise UserError(f"empty class in {where}: a class needs a name")
    return tuple(words)


def _palette_colour(index: int) -> Colour:
    return DEFAULT_PALETTE[index % len(DEFAULT_PALETTE)]


def parse_class_argument(text: str, index: int = 0) -> ClassSpec:
    """``"building,roof,house"`` → class "building" with three queries; ``index`` picks its colour."""
    synonyms = _clean_synonyms(text.split(","), f"--class {text!r}")
    return ClassSpec(synonyms[0], synonyms, _palette_colour(index))


def from_class_arguments(texts: Sequence[str], start_index: int = 0) -> Vocabulary:
    return Vocabulary(tuple(parse_class_argument(t, start_index + i) for i, t in enumerate(texts)))


def _threshold(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise UserError(f"bad threshold {value!r} for {where}: use a probability between 0 and 1")
    return float(value)


def from_json_data(data: object, where: str = "vocabulary") -> Vocabulary:
    """The JSON form (already parsed): a list of class objects or plain strings, or ``{"classes": [...]}``."""
    method_thresholds: dict[str, float] = {}
    if isinstance(data, dict) and "classes" in data:
        method_thresholds = _method_thresholds(data, where)
        data = data["classes"]
    if not isinstance(data, list):
        raise UserError(f"{where}: expected a list of classes, got {type(data).__name__}")
    classes = []
    for i, item in enumerate(data):
        if isinstance(item, str):
            classes.append(parse_class_argument(item, i))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise UserError(f'{where}: class #{i + 1} needs a "name" string')
        label = f"class {item['name']!r} in {where}"
        extra = item.get("synonyms") or []
        if isinstance(extra, str):
            extra = extra.split(",")
        if not isinstance(extra, list):
            raise UserError(f'{label}: "synonyms" must be a list of strings')
        prompts = item.get("prompts") or []
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise UserError(f'{label}: "prompts" must be a list of whole prompts (strings)')
        name = _plain_text(" ".join(item["name"].split()), label)
        if prompts:
            prompts = _clean_synonyms(prompts, label)
            synonyms = _clean_synonyms(extra, label) if any(str(e).strip() for e in extra) else ()
        else:
            synonyms = _clean_synonyms([item["name"], *extra], where)
            name = synonyms[0]
        if not name:
            raise UserError(f"empty class in {where}: a class needs a name")
        colour_value = item.get("colour", item.get("color"))
        colour = _palette_colour(i) if colour_value is None else parse_colour(colour_value, label)
        threshold = _threshold(item.get("threshold"), label)
        classes.append(ClassSpec(name, synonyms, colour, threshold, tuple(prompts)))
    return Vocabulary(tuple(classes), method_thresholds)


def _method_thresholds(data: dict, where: str) -> dict[str, float]:
    """``"method_thresholds"`` of a vocabulary object; a plain ``"threshold"`` counts as SegEarth-OV's."""
    given = data.get("method_thresholds") or {}
    if not isinstance(given, dict):
        raise UserError(f'{where}: "method_thresholds" must map method names to thresholds')
    out = {str(k): _threshold(v, f"method {k!r} in {where}") for k, v in given.items()}
    if data.get("threshold") is not None:
        out.setdefault("segearth-ov", _threshold(data["threshold"], where))
    return out


def from_text(text: str, where: str = "vocabulary") -> Vocabulary:
    """SegEarth-OV's plain-text form: one class per line, commas for synonyms; blank lines ignored."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return Vocabulary(tuple(parse_class_argument(line, i) for i, line in enumerate(lines)))


def load_vocabulary_file(path: str | Path) -> Vocabulary:
    """A ``.json`` file in the JSON form, anything else in SegEarth-OV's plain-text form."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read the vocabulary file {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"the vocabulary file {path} is not valid JSON: {exc}") from None
        return from_json_data(data, str(path))
    return from_text(text, str(path))


def build_vocabulary(
    class_arguments: Sequence[str] | None = None,
    file: str | Path | None = None,
    json_data: object = None,
) -> Vocabulary:
    """Classes from a file / JSON object first, then ``--class`` arguments, checked together."""
    classes: list[ClassSpec] = []
    method_thresholds: dict[str, float] = {}
    for loaded in (
        load_vocabulary_file(file) if file is not None else None,
        from_json_data(json_data) if json_data is not None else None,
    ):
        if loaded is not None:
            classes.extend(loaded.classes)
            method_thresholds.update(loaded.method_thresholds)
    for text in class_arguments or ():
        classes.append(parse_class_argument(text, len(classes)))
    return Vocabulary(tuple(classes), method_thresholds)
