"""Where weights live on disk: the cache folder and the offline folders, and file verification.

Cache folder: ``$RS_OVSEG_HOME/weights`` if ``RS_OVSEG_HOME`` is set, else the platform's cache folder
(``~/.cache/rs-ovseg`` or ``$XDG_CACHE_HOME/rs-ovseg`` on Linux, ``~/Library/Caches/rs-ovseg`` on
macOS, ``%LOCALAPPDATA%\\rs-ovseg\\Cache`` on Windows) + ``/weights``. Each entry's files go to
``<cache>/<entry name>/<filename>``.

Offline folders (air-gapped networks): ``RS_OVSEG_OFFLINE_DIR`` (several joined by ``os.pathsep``) and
any folder passed explicitly. A file is found there as ``<folder>/<filename>`` or
``<folder>/<entry name>/<filename>``, under the source's file name (e.g. ``sam_vit_h_4b8939.pth``).

Every found file is verified before use: its size and sha256 where published. Hashing a 2.5 GB file
takes seconds, so a verified (path, size, mtime) is remembered in ``<cache>/verified.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError
from engine.models.registry import Source, WeightEntry

HOME_ENV = "RS_OVSEG_HOME"
OFFLINE_ENV = "RS_OVSEG_OFFLINE_DIR"
APP_DIR_NAME = "rs-ovseg"
HASH_CHUNK_BYTES = 4 * 1024 * 1024


def home_dir() -> Path:
    """The engine's own data folder (``RS_OVSEG_HOME`` or the platform cache folder)."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser()
    if sys.platform.startswith("win"):
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / APP_DIR_NAME / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP_DIR_NAME
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / APP_DIR_NAME


def cache_dir() -> Path:
    """Folder holding downloaded and imported weights."""
    return home_dir() / "weights"


def entry_dir(entry: WeightEntry) -> Path:
    return cache_dir() / entry.name


def offline_dirs(extra: Iterable[str | os.PathLike] | str | os.PathLike | None = None) -> list[Path]:
    """Offline folders to search: the explicit ones first, then ``RS_OVSEG_OFFLINE_DIR``."""
    if isinstance(extra, (str, os.PathLike)):
        extra = [extra]
    folders = [Path(p).expanduser() for p in (extra or []) if str(p)]
    env = os.environ.get(OFFLINE_ENV, "")
    folders += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return list(dict.fromkeys(folders))


def sha256_of(path: Path, progress=None) -> str:
    """Hex sha256 of a file, read in chunks (bounded memory)."""
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress({"stage": "verify", "file": str(path), "bytes_done": done, "bytes_total": total})
    return digest.hexdigest()


# --- memo of verified files -------------------------------------------------------------------------


def _memo_path() -> Path:
    return home_dir() / "verified.json"


def _memo_read() -> dict:
    try:
        return json.loads(_memo_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def remember_sha256(path: Path, sha256: str) -> None:
    """Record that ``path`` (as it is now: size, mtime) has this sha256."""
    stat = path.stat()
    memo = _memo_read()
    memo[str(path.resolve())] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
    target = _memo_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(memo, indent=1), encoding="utf-8")
        os.replace(temporary, target)
    except OSError:
        pass  # the memo only saves time; a read-only home costs a re-hash next time


def known_sha256(path: Path) -> str | None:
    """The remembered sha256 of ``path`` if it has not changed since, else None."""
    record = _memo_read().get(str(path.resolve()))
    if not record:
        return None
    stat = path.stat()
    if record.get("size") == stat.st_size and record.get("mtime_ns") == stat.st_mtime_ns:
        return record.get("sha256")
    return None


def file_sha256(path: Path, progress=None) -> str:
    """sha256 of ``path``, from the memo when the file is unchanged."""
    cached = known_sha256(path)
    if cached:
        return cached
    value = sha256_of(path, progress)
    remember_sha256(path, value)
    return value


# --- finding and verifying --------------------------------------------------------------------------


@dataclass(frozen=True)
class LocatedFile:
    """An entry's file found on disk and verified against what is published."""

    path: Path
    source: Source
    sha256: str
    place: str  # "cache" or "offline"


def verify_file(path: Path, source: Source, *, name: str, progress=None) -> str:
    """Check size and sha256 (where published); return the file's sha256. Wrong -> UserError."""
    size = path.stat().st_size
    if source.size is not None and size != source.size:
        raise UserError(
            f"{path} is not the published {name} file: it has {size} bytes, the published file has "
            f"{source.size}. It may be truncated or a different file; delete it and run "
            f"`python -m engine models download {name}`, or import the right file with "
            f"`python -m engine models import {name} FILE`."
        )
    actual = file_sha256(path, progress)
    if source.sha256 is not None and actual != source.sha256:
        raise UserError(
            f"{path} is not the published {name} file: its sha256 is {actual}, the published sha256 is "
            f"{source.sha256}. Delete it and run `python -m engine models download {name}`, or import "
            f"the right file with `python -m engine models import {name} FILE`."
        )
    return actual


def candidate_paths(entry: WeightEntry, extra_offline=None) -> list[tuple[Path, Source, str]]:
    """Every place an entry's file could be, cache first: (path, source, place)."""
    places: list[tuple[Path, Source, str]] = []
    for source in entry.sources:
        places.append((entry_dir(entry) / source.filename, source, "cache"))
    for folder in offline_dirs(extra_offline):
        for source in entry.sources:
            places.append((folder / source.filename, source, "offline"))
            places.append((folder / entry.name / source.filename, source, "offline"))
    return places


def find_weights(entry: WeightEntry, extra_offline=None, progress=None) -> LocatedFile | None:
    """The first verified file for ``entry`` in the cache or an offline folder, or None.

    A file found under the right name but with the wrong size or checksum is an error (UserError),
    not a miss: silently skipping it would hide a corrupted or mistaken file from the user.
    """
    for path, source, place in candidate_paths(entry, extra_offline):
        if path.is_file():
            digest = verify_file(path, source, name=entry.name, progress=progress)
            return LocatedFile(path, source, digest, place)
    return None


def is_cached(entry: WeightEntry, extra_offline=None) -> str | None:
    """'cache' / 'offline' if a file for ``entry`` is present (not verified: cheap), else None."""
    for path, _source, place in candidate_paths(entry, extra_offline):
        if path.is_file():
            return place
    return None
