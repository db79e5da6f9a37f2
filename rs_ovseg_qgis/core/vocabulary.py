"""The vocabulary as the plugin edits it: classes with synonyms, colours and optional thresholds.

Plain Python (no Qt, no engine import). Its JSON form is the engine's vocabulary JSON:
``{"name": ..., "classes": [{"name", "synonyms", "prompts", "color", "threshold"}],
"method_thresholds": {"segearth-ov": 0.1}}``; keys the plugin does not know (prompt templates, say) are
kept and written back unchanged. A threshold's meaning depends on the method (a probability for
SegEarth-OV, a cosine margin for ReSeg-CLIP), so a vocabulary's run thresholds are per method; an
older top-level ``"threshold"`` is read as SegEarth-OV's, as the engine reads it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

# Distinct, colour-blind-friendlier colours given to classes that have none, in order.
DEFAULT_PALETTE = [
    "#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#ffff33", "#a65628", "#f781bf",
    "#999999", "#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854", "#ffd92f", "#e5c494",
]  # fmt: skip
_HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


class VocabularyError(ValueError):
    """A vocabulary the user wrote cannot be used; the message says what to change."""


@dataclass
class VocabularyClass:
    """One output class: ``name`` is the legend label, every synonym is queried too (best one wins)."""

    name: str
    synonyms: list[str] = field(default_factory=list)
    color: str = ""  # "#rrggbb"; empty = take the next palette colour
    threshold: float | None = None  # minimum score in [0, 1]; None = the vocabulary's threshold
    # Whole prompts queried as written (no templates); with them, the name is only the legend label.
    prompts: list[str] = field(default_factory=list)

    def queries(self) -> list[str]:
        return [*self.synonyms, *self.prompts] if self.prompts else [self.name, *self.synonyms]

    def to_dict(self) -> dict:
        item: dict = {"name": self.name, "synonyms": list(self.synonyms), "color": self.color}
        if self.prompts:
            item["prompts"] = list(self.prompts)
        if self.threshold is not None:
            item["threshold"] = self.threshold
        return item


@dataclass
class Vocabulary:
    name: str = "vocabulary"
    classes: list[VocabularyClass] = field(default_factory=list)
    threshold: float | None = None  # the run's threshold for any method (Processing's THRESHOLD); not saved
    # Run threshold per method name (benchmark presets carry SegEarth-OV's dataset thresholds).
    method_thresholds: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # keys the plugin does not edit, kept as they are

    def threshold_for(self, method: str) -> float | None:
        """The threshold a run with ``method`` gets from this vocabulary; None: the method's default."""
        return self.threshold if self.threshold is not None else self.method_thresholds.get(method)

    # --- conversions ---------------------------------------------------------------------------
    @classmethod
    def from_lines(cls, text: str, name: str = "vocabulary") -> Vocabulary:
        """One class per line, commas separate synonyms: ``building,roof,house``. Blank lines skipped."""
        classes = []
        for line in text.splitlines():
            words = [w.strip() for w in line.split(",") if w.strip()]
            if words:
                classes.append(VocabularyClass(words[0], words[1:]))
        return cls(name, classes).with_colours()

    def to_lines(self) -> str:
        return "\n".join(",".join(c.queries()) for c in self.classes)

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
            raise VocabularyError('a vocabulary is a JSON object with a "classes" list')
        classes = []
        for position, item in enumerate(data["classes"], start=1):
            if isinstance(item, str):
                words = [w.strip() for w in item.split(",") if w.strip()]
                if not words:
                    raise VocabularyError(f"class {position} is empty")
                classes.append(VocabularyClass(words[0], words[1:]))
                continue
            if not isinstance(item, dict) or not str(item.get("name", "")).strip():
                raise VocabularyError(f"class {position} needs a name")
            threshold = item.get("threshold")
            classes.append(
                VocabularyClass(
                    name=str(item["name"]).strip(),
                    synonyms=[str(s).strip() for s in item.get("synonyms", []) if str(s).strip()],
                    color=str(item.get("color", item.get("colour", ""))),
                    threshold=None if threshold is None else float(threshold),
                    prompts=[str(p).strip() for p in item.get("prompts") or [] if str(p).strip()],
                )
            )
        known = {"name", "classes", "threshold", "method_thresholds"}
        by_method = data.get("method_thresholds") or {}
        if not isinstance(by_method, dict):
            raise VocabularyError('"method_thresholds" maps method names to thresholds')
        method_thresholds = {str(k): float(v) for k, v in by_method.items()}
        if data.get("threshold") is not None:
            method_thresholds.setdefault("segearth-ov", float(data["threshold"]))
        vocabulary = cls(
            name=str(data.get("name") or "vocabulary"),
            classes=classes,
            method_thresholds=method_thresholds,
            extra={k: v for k, v in data.items() if k not in known},
        )
        return vocabulary.with_colours()

    def to_dict(self) -> dict:
        data = {"name": self.name, "classes": [c.to_dict() for c in self.classes], **self.extra}
        if self.method_thresholds:
            data["method_thresholds"] = dict(self.method_thresholds)
        return data

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise VocabularyError(f"not valid JSON: {error}") from error
        return cls.from_dict(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    # --- checks --------------------------------------------------------------------------------
    def with_colours(self) -> Vocabulary:
        """Give every class without a valid colour the next unused palette colour."""
        used = {c.color.lower() for c in self.classes if _HEX_COLOUR.match(c.color)}
        free = [p for p in DEFAULT_PALETTE if p not in used]
        for index, item in enumerate(self.classes):
            if not _HEX_COLOUR.match(item.color):
                item.color = free.pop(0) if free else DEFAULT_PALETTE[index % len(DEFAULT_PALETTE)]
        return self

    def validate(self) -> None:
        """Raise VocabularyError with an actionable message if the engine could not use this."""
        if not self.classes:
            raise VocabularyError("the vocabulary has no classes: add at least one class name")
        if len(self.classes) > 255:
            raise VocabularyError(f"{len(self.classes)} classes: the class raster holds at most 255")
        seen: set[str] = set()
        for item in self.classes:
            if not item.name.strip():
                raise VocabularyError("a class has no name: give every row a name or remove it")
            if item.name.lower() in seen:
                raise VocabularyError(f'class "{item.name}" appears twice: class names must be unique')
            seen.add(item.name.lower())
            if item.threshold is not None and not 0.0 <= item.threshold <= 1.0:
                raise VocabularyError(f'threshold of "{item.name}" is {item.threshold}: use 0 to 1')
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise VocabularyError(f"vocabulary threshold {self.threshold}: use a value from 0 to 1")
        for method, value in self.method_thresholds.items():
            if not 0.0 <= value <= 1.0:
                raise VocabularyError(f"threshold {value} for {method}: use a value from 0 to 1")

    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` → (r, g, b), each 0..255."""
    if not _HEX_COLOUR.match(colour):
        raise VocabularyError(f"colour {colour!r} is not #rrggbb")
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)
