"""Trained AerOSeg models the user has made: remembered in QgsSettings, described by the
MODEL.aeroseg.json the engine writes beside each model (read here without torch), offered by the dock's
method choice and by Processing's segment algorithm."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsSettings

from ..definitions import SETTINGS_GROUP

SETTING_TRAINED_MODELS = f"{SETTINGS_GROUP}/aeroseg_models"
METHOD = "aeroseg"
#: Called (on the main thread) after a model is remembered, e.g. to refresh the dock's method list.
listeners: list[Callable[[], None]] = []


@dataclass(frozen=True)
class TrainedModel:
    path: str
    name: str
    classes: tuple[str, ...]  # the class names (first synonym of each)
    architecture: str
    training_gsd: float | None = None  # metres per pixel the model learnt at (its default working GSD)

    @property
    def label(self) -> str:
        """ "AerOSeg — NAME, trained on building, road, tree" (as the method choice shows it)."""
        shown = ", ".join(self.classes[:4]) + (", …" if len(self.classes) > 4 else "")
        return f"AerOSeg — {self.name}, trained on {shown}"


def description_path(model: str | Path) -> Path:
    return Path(model).with_suffix(".aeroseg.json")


def describe(model: str | Path) -> TrainedModel | None:
    """The model's description, or None when the model or its MODEL.aeroseg.json is gone or unreadable."""
    path = Path(model)
    try:
        data = json.loads(description_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not path.is_file() or not isinstance(data, dict):
        return None
    names = tuple(str(name) for name in data.get("class_names") or ())
    architecture = str((data.get("architecture") or {}).get("name", "?"))
    gsd = data.get("training_gsd")
    training_gsd = float(gsd) if isinstance(gsd, (int, float)) and gsd > 0 else None
    return TrainedModel(str(path), str(data.get("name") or path.stem), names, architecture, training_gsd)


def _remembered() -> list[str]:
    value = QgsSettings().value(SETTING_TRAINED_MODELS, [], type=list) or []
    return [str(item) for item in value if str(item)]


def remember_model(model: str | Path) -> None:
    """Add a model to the list (most recent first) and tell the listeners."""
    path = str(Path(model).resolve())
    paths = [path] + [p for p in _remembered() if p != path]
    QgsSettings().setValue(SETTING_TRAINED_MODELS, paths)
    for listener in list(listeners):
        listener()


def trained_models() -> list[TrainedModel]:
    """The remembered models that still exist, most recent first."""
    return [model for model in map(describe, _remembered()) if model is not None]
