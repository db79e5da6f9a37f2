"""The classes of a class raster written by ``segment``: value 0 is unclassified, 1..N the vocabulary's
classes, named by the band's category names; the JSON sidecar beside it (``OUT.json``) adds each class's
synonyms, used to match reference class names."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError
from engine.raster.gdal_setup import gdal_module
from engine.vocabulary import UNCLASSIFIED_NAME


@dataclass(frozen=True)
class MapClass:
    value: int  # raster value
    name: str
    synonyms: tuple[str, ...]  # lower-cased words matching this class, the name first


@dataclass(frozen=True)
class MapClasses:
    classes: tuple[MapClass, ...]
    source: str  # "category names" | "sidecar"
    sidecar: str | None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]


def _sidecar_vocabulary(path: Path) -> list[dict] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    vocabulary = record.get("vocabulary") if isinstance(record, dict) else None
    return vocabulary if isinstance(vocabulary, list) else None


def open_map(prediction: str):
    """The GDAL dataset of the class raster ``prediction``; a missing or unreadable file is a UserError."""
    gdal = gdal_module()
    if not Path(prediction).exists():
        raise UserError(f"map not found: {prediction}")
    try:
        return gdal.Open(str(prediction))
    except RuntimeError as exc:
        raise UserError(f"cannot open the map {prediction}: {exc}") from None


def read_map_classes(prediction: str) -> MapClasses:
    """Classes 1..N of ``prediction`` from its category names, synonyms from its sidecar when present."""
    dataset = open_map(prediction)
    dataset.GetMetadata()  # GDAL 3.6 loads the PAM side file (category names) lazily
    names = list(dataset.GetRasterBand(1).GetCategoryNames() or [])
    dataset = None
    sidecar = Path(prediction).with_suffix(".json")
    vocabulary = _sidecar_vocabulary(sidecar) if sidecar.is_file() else None
    source = "category names"
    if len(names) < 2 and vocabulary:
        names = [UNCLASSIFIED_NAME, *(str(c.get("name")) for c in vocabulary)]
        source = "sidecar"
    if len(names) < 2:
        raise UserError(
            f"{prediction} has no class names: give a class raster written by `segment` "
            "(its category names, or its OUT.json sidecar, name the classes)"
        )
    synonyms_by_name = {}
    for entry in vocabulary or []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            words = [entry["name"], *(s for s in entry.get("synonyms") or [] if isinstance(s, str))]
            synonyms_by_name[entry["name"].casefold()] = words
    classes = []
    for value, name in enumerate(names[1:], start=1):
        if not name:
            continue
        words = synonyms_by_name.get(name.casefold(), [name])
        ordered = tuple(dict.fromkeys(w.casefold().strip() for w in [name, *words]))
        classes.append(MapClass(value, name, ordered))
    return MapClasses(tuple(classes), source, str(sidecar) if vocabulary else None)
