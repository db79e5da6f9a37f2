"""Write the class raster (uint8, colour table, category names) and the confidence raster (float32),
tile by tile, atomically.

Each output is first written to a hidden temporary file in its destination folder and renamed over the
final name only when the whole run succeeded (``os.replace`` is atomic within a folder); on error or
cancellation the temporary files are deleted, so no partial output is ever left behind. GTiff stores
category names in a ``.aux.xml`` side file, which travels with its raster.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.raster.gdal_setup import gdal_module as _gdal
from engine.raster.grid import OutputGrid
from engine.raster.write_failures import reporting_write_failures
from engine.vocabulary import Vocabulary

# Tiled, compressed, BigTIFF when needed: what a GIS reads fastest and what scales to huge rasters.
BLOCK_SIZE = 256
GTIFF_OPTIONS = (
    "TILED=YES",
    f"BLOCKXSIZE={BLOCK_SIZE}",
    f"BLOCKYSIZE={BLOCK_SIZE}",
    "COMPRESS=DEFLATE",
    "BIGTIFF=IF_SAFER",
)
CONFIDENCE_NODATA = -1.0
SIDE_SUFFIXES = (".aux.xml",)


def block_row_bytes(width: int, with_confidence: bool) -> int:
    """Bytes of one row of output blocks: the class raster (uint8) and the confidence (float32)."""
    return BLOCK_SIZE * width * (1 + (4 if with_confidence else 0))


def sidecar_path(out: str | Path) -> Path:
    """``OUT.tif`` → ``OUT.json``."""
    return Path(out).with_suffix(".json")


def _creation_error(folder: Path) -> OSError | None:
    """Why no file can be created in ``folder`` (None: it can). Tried, because permission bits lie for
    root and on read-only or special file systems."""
    probe = folder / f".rs-ovseg-write-test-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch(exist_ok=False)
    except OSError as error:
        return error
    probe.unlink()
    return None


def check_output_path(path: str | Path, overwrite: bool, what: str = "output") -> Path:
    """Refuse a missing/unwritable folder, a folder as file, or an existing file without ``overwrite``."""
    path = Path(path).expanduser()
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"the {what} folder does not exist: {folder}")
    error = _creation_error(folder)
    if error is not None:
        why = "it is on a read-only file system" if error.errno == errno.EROFS else error.strerror
        raise UserError(f"the {what} folder is not writable: {folder} ({why}); choose another folder")
    if path.is_dir():
        raise UserError(f"the {what} path is a folder: {path}")
    if path.exists() and not overwrite:
        raise UserError(f"the {what} already exists: {path} (pass --overwrite to replace it)")
    return path.resolve()


class AtomicFiles:
    """Temporary paths that become final paths on ``commit`` or vanish on ``discard``."""

    def __init__(self) -> None:
        self._pairs: list[tuple[Path, Path]] = []

    def temporary_for(self, final: Path) -> Path:
        temporary = final.with_name(f".{final.stem}.partial-{uuid.uuid4().hex[:8]}{final.suffix}")
        self._pairs.append((temporary, final))
        return temporary

    def commit(self) -> None:
        for temporary, final in self._pairs:
            for suffix in SIDE_SUFFIXES:
                side_final = final.with_name(final.name + suffix)
                side_temp = temporary.with_name(temporary.name + suffix)
                if side_temp.exists():
                    os.replace(side_temp, side_final)
                elif side_final.exists():
                    side_final.unlink()  # a stale side file of an overwritten output
            os.replace(temporary, final)
        self._pairs = []

    def discard(self) -> None:
        for temporary, _final in self._pairs:
            for path in (temporary, *(temporary.with_name(temporary.name + s) for s in SIDE_SUFFIXES)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        self._pairs = []


def _create(path: Path, grid: OutputGrid, data_type: int):
    gdal = _gdal()
    driver = gdal.GetDriverByName("GTiff")
    dataset = driver.Create(str(path), grid.width, grid.height, 1, data_type, list(GTIFF_OPTIONS))
    if grid.placement is not None:
        grid.placement.apply_to(dataset)  # geotransform and CRS, or the GCPs and their CRS, or the RPCs
        return dataset
    if grid.geotransform is not None:
        dataset.SetGeoTransform(grid.geotransform)
    if grid.projection_wkt:
        dataset.SetProjection(grid.projection_wkt)
    return dataset


def colour_table_entries(vocabulary: Vocabulary) -> list[tuple[int, int, int, int]]:
    """RGBA per raster value: 0 (unclassified) black, class i its colour.

    0 is written transparent, but TIFF colour maps have no alpha: GTiff stores it opaque. The plugin's
    paletted style makes 0 transparent; other GIS show it black.
    """
    return [(0, 0, 0, 0), *((r, g, b, 255) for r, g, b in (c.colour for c in vocabulary.classes))]


def _ignore_unraisable(_unraisable) -> None:
    """``sys.unraisablehook`` while an abandoned dataset is dropped (see ``_BandWriter.abandon``)."""


class _BandWriter:
    """One single-band GeoTIFF being written; every GDAL failure becomes ``write_failure`` naming the
    user's output (``shown_as``: the final path, not the temporary one)."""

    def __init__(self, path: Path, shown_as: Path | None) -> None:
        self.path = Path(path)
        self.shown_as = Path(shown_as) if shown_as is not None else self.path
        self.dataset = None
        self.band = None

    def _write(self, array: np.ndarray, xoff: int, yoff: int) -> None:
        with reporting_write_failures(self.shown_as):
            self.band.WriteArray(array, xoff, yoff)

    def close(self) -> None:
        """Flush every block (and the PAM side file) to disk; raises ``write_failure`` if it cannot."""
        if self.dataset is not None:
            with reporting_write_failures(self.shown_as):
                self.band.FlushCache()
                self.dataset.FlushCache()
            self.band = None
            self.dataset = None

    def abandon(self) -> None:
        """Drop the dataset after a failure without raising: its file is about to be deleted."""
        gdal = _gdal()
        # Closing a dataset whose disk is full fails again inside its destructor, where an exception
        # can only be printed ("Exception ignored in ..."): silence both for the moment. Exceptions are
        # not switched off instead: gdal.DontUseExceptions() refuses once ogr has pushed its own handler.
        unraisable_hook = sys.unraisablehook
        sys.unraisablehook = _ignore_unraisable
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        try:
            self.band = None
            self.dataset = None
        finally:
            gdal.PopErrorHandler()
            sys.unraisablehook = unraisable_hook


class ClassRasterWriter(_BandWriter):
    """Single-band uint8 GeoTIFF: 0 = unclassified/nodata, 1..N = vocabulary classes."""

    def __init__(
        self, path: Path, grid: OutputGrid, vocabulary: Vocabulary, shown_as: Path | None = None
    ) -> None:
        super().__init__(path, shown_as)
        gdal = _gdal()
        with reporting_write_failures(self.shown_as):
            self.dataset = _create(path, grid, gdal.GDT_Byte)
            band = self.dataset.GetRasterBand(1)
            table = gdal.ColorTable()
            for value, rgba in enumerate(colour_table_entries(vocabulary)):
                table.SetColorEntry(value, rgba)
            band.SetRasterColorTable(table)
            band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
            band.SetCategoryNames(vocabulary.category_names())
            band.SetDescription("class")
        self.band = band

    def write(self, labels: np.ndarray, xoff: int, yoff: int) -> None:
        self._write(np.ascontiguousarray(labels, dtype=np.uint8), xoff, yoff)


class ConfidenceRasterWriter(_BandWriter):
    """Single-band float32 GeoTIFF: the winning class's probability; nodata pixels −1."""

    def __init__(self, path: Path, grid: OutputGrid, shown_as: Path | None = None) -> None:
        super().__init__(path, shown_as)
        gdal = _gdal()
        with reporting_write_failures(self.shown_as):
            self.dataset = _create(path, grid, gdal.GDT_Float32)
            self.band = self.dataset.GetRasterBand(1)
            self.band.SetNoDataValue(CONFIDENCE_NODATA)
            self.band.SetDescription("confidence")

    def write(self, confidence: np.ndarray, xoff: int, yoff: int) -> None:
        self._write(np.ascontiguousarray(confidence, dtype=np.float32), xoff, yoff)


def category_names(path: str | Path) -> Sequence[str] | None:
    """Category names of band 1 (loads the PAM side file first, which GDAL 3.6 does lazily)."""
    gdal = _gdal()
    dataset = gdal.Open(str(path))
    dataset.GetMetadata()
    return dataset.GetRasterBand(1).GetCategoryNames()
