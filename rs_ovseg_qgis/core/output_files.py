"""Files the segment algorithm writes beside the engine's: which input files to protect, replacing an
output atomically, and sweeping away what a killed engine left half-written.

Whether a path may be written is decided by the engine (its ``check_outputs`` request), never here: one
rule for the command line, the worker, Processing and the dock.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

#: How the engine names a file while it is being written (engine/raster/writer.py, AtomicFiles):
#: ``.<stem>.partial-<8 hex><suffix>``, plus GDAL's ``.aux.xml`` beside it.
ENGINE_PARTIAL = ".{stem}.partial-"


def args_sidecar(out: str | Path) -> str:
    """The engine's JSON sidecar of the class raster ``out`` (``OUT.tif`` → ``OUT.json``)."""
    return str(Path(out).with_suffix(".json"))


def input_files(path: str) -> list[str]:
    """The input's dataset path, and its QGIS default style (``IN.qml``) when it has one: the engine
    expands the dataset to all its files; the style is QGIS's, which GDAL does not list."""
    style = Path(path).with_suffix(".qml")
    return [path, str(style)] if style.is_file() else [path]


def replace_atomically(final: str | Path, write: Callable[[Path], object]) -> None:
    """``write(staged)`` into a fresh file beside ``final``, then rename it over ``final``: an earlier
    file is replaced only by a complete one, and a failure leaves neither the staged file nor a gap."""
    final = Path(final)
    staged = final.with_name(f".{final.stem}.staged-{uuid.uuid4().hex[:8]}{final.suffix}")
    try:
        write(staged)
        os.replace(staged, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()


def remove_engine_leftovers(finals: Iterable[str | Path | None]) -> list[Path]:
    """Delete the engine's temporary files for these outputs (a killed worker cannot clean up itself).

    Only names the engine would have made for exactly these outputs are touched; returns them.
    """
    removed = []
    for final in filter(None, finals):
        final = Path(final)
        prefix = ENGINE_PARTIAL.format(stem=final.stem)
        if not final.parent.is_dir():
            continue
        for path in final.parent.iterdir():
            if path.name.startswith(prefix) and path.is_file():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed
