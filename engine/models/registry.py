"""The registry of known weights: ``registry.json`` read into typed records.

Weights are data, not code: adding a model is one JSON entry. Each entry names what the file is
(``kind`` clip | sam | upsampler, the ``architecture`` to build), where it comes from (one or more
``sources``, any one of which suffices), how to check it (``sha256`` and ``size`` where published) and
its licence. This module only reads that data; finding, downloading and loading live elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from engine.errors import UserError

REGISTRY_FILE = Path(__file__).resolve().parent / "registry.json"
KINDS = ("clip", "sam", "upsampler", "sam3")


@dataclass(frozen=True)
class HubFile:
    """A file in a Hugging Face hub repository."""

    repo: str
    file: str
    revision: str | None = None

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}/resolve/{self.revision or 'main'}/{self.file}"


@dataclass(frozen=True)
class Source:
    """One way to obtain an entry's weights; the file is stored under ``filename``.

    Exactly one of ``hub`` and ``url`` is set. ``archive_member`` names the file to take out of a zip
    (matched on the member's last path component). ``sha256``/``size`` are None where unpublished.
    """

    filename: str
    format: str
    hub: HubFile | None = None
    url: str | None = None
    archive_member: str | None = None
    sha256: str | None = None
    size: int | None = None

    @property
    def location(self) -> str:
        """Where the file comes from, for messages."""
        return self.hub.url if self.hub else str(self.url)


@dataclass(frozen=True)
class WeightEntry:
    name: str
    kind: str
    architecture: str
    description: str
    licence: str
    sources: tuple[Source, ...]
    strict: bool = True
    quick_gelu: bool = True  # CLIP only: the activation the weights were trained with
    dim: int | None = None  # upsampler only: feature channels it lifts
    open_clip: dict | None = None  # CLIP only: open_clip's own (architecture, tag) for these weights
    #: the hub repository grants downloads only to accounts that accepted the licence there; ``access``
    #: is the page where a user requests it.
    gated: bool = False
    access: str | None = None

    @property
    def filenames(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.filename for s in self.sources))

    @property
    def size(self) -> int | None:
        """The size of the first source whose size is published (bytes)."""
        return next((s.size for s in self.sources if s.size), None)


def _source(raw: dict) -> Source:
    hub = raw.get("hub")
    source = Source(
        filename=raw["filename"],
        format=raw["format"],
        hub=HubFile(hub["repo"], hub["file"], hub.get("revision")) if hub else None,
        url=raw.get("url"),
        archive_member=raw.get("archive_member"),
        sha256=(raw.get("sha256") or None),
        size=raw.get("size"),
    )
    if (source.hub is None) == (source.url is None):
        raise ValueError(f"registry source {source.filename}: exactly one of 'hub' and 'url' is needed")
    if source.sha256 is not None and len(source.sha256) != 64:
        raise ValueError(f"registry source {source.filename}: sha256 must be 64 hex digits")
    return source


def _entry(raw: dict) -> WeightEntry:
    if raw["kind"] not in KINDS:
        raise ValueError(f"registry entry {raw['name']}: kind must be one of {KINDS}")
    return WeightEntry(
        name=raw["name"],
        kind=raw["kind"],
        architecture=raw["architecture"],
        description=raw.get("description", ""),
        licence=raw.get("licence", "unknown"),
        sources=tuple(_source(s) for s in raw["sources"]),
        strict=bool(raw.get("strict", True)),
        quick_gelu=bool(raw.get("quick_gelu", True)),
        dim=raw.get("dim"),
        open_clip=raw.get("open_clip"),
        gated=bool(raw.get("gated", False)),
        access=raw.get("access"),
    )


@lru_cache(maxsize=4)
def _load(path: Path) -> tuple[dict[str, WeightEntry], dict[str, str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    entries = {}
    for raw in data["weights"]:
        entry = _entry(raw)
        if entry.name in entries:
            raise ValueError(f"registry: duplicate entry {entry.name}")
        entries[entry.name] = entry
    defaults = dict(data.get("defaults", {}))
    for kind, name in defaults.items():
        if name not in entries or entries[name].kind != kind:
            raise ValueError(f"registry: default {kind} {name!r} is not a {kind} entry")
    return entries, defaults


def all_entries(kind: str | None = None) -> list[WeightEntry]:
    """Every known weight, in registry order; only those of ``kind`` when given."""
    entries = _load(REGISTRY_FILE)[0].values()
    return [e for e in entries if kind is None or e.kind == kind]


def default_name(kind: str) -> str:
    return _load(REGISTRY_FILE)[1][kind]


def is_known(name: str) -> bool:
    return name in _load(REGISTRY_FILE)[0]


def get_entry(name: str, kind: str | None = None) -> WeightEntry:
    """The entry called ``name``; a UserError listing the known names if there is none."""
    entries = _load(REGISTRY_FILE)[0]
    entry = entries.get(name)
    if entry is None or (kind is not None and entry.kind != kind):
        known = ", ".join(e.name for e in all_entries(kind))
        what = f"{kind} weights" if kind else "weights"
        raise UserError(
            f"unknown {what} {name!r}. Known: {known}. A path to a checkpoint file also works; "
            "`python -m engine models list` shows them all."
        )
    return entry
