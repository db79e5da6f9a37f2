"""The one place that decides whether output paths are allowed: never an input's file, never each other.

An output may not be any file the input dataset consists of (what GDAL's ``GetFileList()`` reports: a
VRT's sources, recursively; a shapefile's siblings; the ``.aux.xml`` side file), and two outputs may not
be one file. "The same file" means file identity, not spelling: existing files are compared by device
and inode (``os.path.samefile``), which sees through relative paths, ``..``, symlinks, hard links and
case-insensitive file systems; a path that does not exist yet is compared by its resolved spelling
(symlinked folders resolved), case-folded where its folder's file system ignores case. ``--overwrite``
never changes any of this: it only allows replacing an earlier *output*.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from engine.errors import UserError
from engine.raster.gdal_setup import gdal_module as _gdal

#: Side files GDAL keeps beside a dataset (persistent auxiliary metadata), counted as its files.
SIDE_SUFFIXES = (".aux.xml",)


def _absolute(path: str) -> str:
    """Absolute, normalised spelling with every existing folder's symlinks resolved."""
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def _opened_file_list(path: str) -> list[str]:
    """``GetFileList()`` of ``path`` opened as raster or vector, [] if GDAL cannot open it."""
    gdal = _gdal()
    flags = gdal.OF_RASTER | gdal.OF_VECTOR | gdal.OF_READONLY
    try:
        dataset = gdal.OpenEx(path, flags)
    except RuntimeError:
        return []
    if dataset is None:
        return []
    try:
        return list(dataset.GetFileList() or [])
    finally:
        dataset = None


def _vrt_source_names(path: str) -> list[str]:
    """Source file names a VRT refers to, read from its XML (GDAL omits sources it cannot open)."""
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return []
    folder = os.path.dirname(path)
    names = []
    for element in root.iter("SourceFilename"):
        name = (element.text or "").strip()
        if not name or name.startswith("/vsi"):
            continue
        relative = element.get("relativeToVRT", "0") == "1"
        names.append(os.path.join(folder, name) if relative else name)
    return names


def dataset_files(path: str) -> list[str]:
    """Every file the dataset at ``path`` consists of, as absolute resolved paths (the path itself first).

    Raster or vector, as GDAL reports it (``GetFileList()``), plus each file's ``.aux.xml`` when present
    and the files of a VRT's sources, recursively. A path GDAL cannot open is its own only file.
    """
    seen: dict[str, None] = {}

    def visit(name: str) -> None:
        if name.startswith("/vsi"):
            return
        absolute = _absolute(name)
        if absolute in seen:
            return
        seen[absolute] = None
        listed = [_absolute(f) for f in _opened_file_list(absolute) if not str(f).startswith("/vsi")]
        for member in listed:
            seen.setdefault(member, None)
        for member in [absolute, *listed]:
            for suffix in SIDE_SUFFIXES:
                side = member + suffix
                if os.path.exists(side):
                    seen.setdefault(side, None)
        for member in [absolute, *listed]:
            if member.lower().endswith(".vrt") and os.path.isfile(member):
                for source in _vrt_source_names(member):
                    visit(source)
            elif member != absolute and member.lower().endswith(".vrt"):
                visit(member)

    visit(str(path))
    return list(seen)


@lru_cache(maxsize=64)
def _ignores_case(folder: str) -> bool:
    """Whether the file system holding ``folder`` treats names case-insensitively (tried, not guessed).

    A lower-case probe file is created and looked up in upper case; if no probe can be made, case is
    assumed to be ignored (the cautious answer: it only refuses two names that differ by case alone).
    """
    probe = os.path.join(folder, f".rs-ovseg-case-probe-{uuid.uuid4().hex[:8]}")
    try:
        with open(probe, "x"):
            pass
    except OSError:
        return True
    try:
        return os.path.exists(os.path.join(folder, os.path.basename(probe).upper()))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)


def _same_file(a: str, b: str) -> bool:
    """File identity where both exist, else the resolved spelling (case-folded where case is ignored)."""
    if os.path.lexists(a) and os.path.lexists(b):
        with contextlib.suppress(OSError):
            return os.path.samefile(a, b)
    ra, rb = _absolute(a), _absolute(b)
    if ra == rb:
        return True
    if ra.casefold() != rb.casefold():
        return False
    folder = os.path.dirname(ra)
    return _ignores_case(folder) if os.path.isdir(folder) else True


def ensure_outputs_safe(inputs: Iterable[str], outputs: Mapping[str, str | None]) -> None:
    """Raise UserError if an output is one of the inputs' files or two outputs are one file.

    ``inputs``: input dataset paths (each expanded to its files by ``dataset_files``).
    ``outputs``: user-facing label (``"--out"``, ``"--confidence"``, ``"sidecar"``, ...) → path or None.
    Each raster output's ``.aux.xml`` side file is checked against the inputs too.
    """
    chosen = {label: str(path) for label, path in outputs.items() if path}
    input_files = [(str(dataset), f) for dataset in inputs if dataset for f in dataset_files(str(dataset))]
    for label, output in chosen.items():
        sides = [(output + s, f"its side file {Path(output).name}{s} ") for s in SIDE_SUFFIXES]
        for candidate, what in [(output, ""), *sides]:
            for dataset, member in input_files:
                if _same_file(candidate, member):
                    if _absolute(member) == _absolute(dataset):
                        whose = f"the input {dataset}"
                    else:
                        whose = f"{member}, a file of the input {dataset}"
                    raise UserError(
                        f"{label} {output} would write {what}over "
                        f"{whose}: choose another file name (--overwrite never replaces an input)"
                    )
    labels = list(chosen)
    for i, first in enumerate(labels):
        for second in labels[i + 1 :]:
            if _same_file(chosen[first], chosen[second]):
                raise UserError(
                    f"{first} and {second} are the same file ({chosen[first]}): "
                    "give each output its own file name"
                )
