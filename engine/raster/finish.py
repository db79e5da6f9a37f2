"""Make a written output raster display fast at any zoom: internal overviews, or a Cloud-Optimised GeoTIFF.

A 200,000-pixel-wide class raster without overviews makes a GIS read every pixel to draw the country;
with a pyramid of reduced copies inside the file it reads a few blocks. Classes are reduced by NEAREST
(a class value must stay a class value, never an average of two), the confidence by AVERAGE (GDAL skips
its nodata, -1). ``gtiff`` adds the pyramid to the tiled GeoTIFF in place; ``cog`` copies the GeoTIFF
through GDAL's COG driver (overviews, then the image, ordered for HTTP range reads). Both keep the colour
table and category names (GTiff and COG store the names in the ``.aux.xml`` beside the raster).

Everything here works on the run's temporary files: the caller renames them when the run succeeds.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from engine.errors import UserError
from engine.raster.gdal_setup import gdal_module as _gdal
from engine.raster.write_failures import reporting_write_failures
from engine.raster.writer import BLOCK_SIZE, SIDE_SUFFIXES

OUTPUT_FORMATS = ("gtiff", "cog")
#: How each output is reduced for its overviews.
RESAMPLING = {"classes": "NEAREST", "confidence": "AVERAGE"}
COG_OPTIONS = (f"BLOCKSIZE={BLOCK_SIZE}", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER", "OVERVIEWS=IGNORE_EXISTING")


def output_format(value: str | None) -> str:
    """The checked ``--format`` (``gtiff`` when not given)."""
    name = (value or "gtiff").strip().lower()
    if name not in OUTPUT_FORMATS:
        raise UserError(f"--format must be one of {', '.join(OUTPUT_FORMATS)}, got {value!r}")
    return name


def overview_levels(width: int, height: int, block: int = BLOCK_SIZE) -> list[int]:
    """Reduction factors 2, 4, 8, ... until the smallest overview fits in one ``block``-pixel tile."""
    levels, factor = [], 2
    while max(width, height) > block * factor // 2:
        levels.append(factor)
        factor *= 2
    return levels


def finish_raster(path: Path, kind: str, fmt: str, shown_as: Path | None = None) -> None:
    """Give the closed GeoTIFF at ``path`` (a run's temporary file) its overviews, as ``fmt``; ``kind``
    is "classes" or "confidence". ``shown_as``: the user's final path, named in write failures."""
    path = Path(path)
    with reporting_write_failures(shown_as or path):
        if fmt == "cog":
            _to_cog(path, RESAMPLING[kind])
        else:
            _add_overviews(path, RESAMPLING[kind])


def _add_overviews(path: Path, resampling: str) -> None:
    gdal = _gdal()
    dataset = gdal.Open(str(path), gdal.GA_Update)
    try:
        levels = overview_levels(dataset.RasterXSize, dataset.RasterYSize)
        if levels:
            dataset.BuildOverviews(resampling, levels)
        dataset.FlushCache()
    finally:
        dataset = None


def _to_cog(path: Path, resampling: str) -> None:
    """Replace the GeoTIFF at ``path`` by its COG copy (and its side file by the copy's)."""
    gdal = _gdal()
    copy = path.with_name(path.stem + ".cog" + path.suffix)
    sides = [(copy.with_name(copy.name + s), path.with_name(path.name + s)) for s in SIDE_SUFFIXES]
    try:
        options = [*COG_OPTIONS, f"RESAMPLING={resampling}"]
        dataset = gdal.Translate(str(copy), str(path), format="COG", creationOptions=options)
        dataset = None  # noqa: F841 (closing flushes the file and its .aux.xml)
        os.replace(copy, path)
        for side_copy, side in sides:
            if side_copy.exists():
                os.replace(side_copy, side)
            elif side.exists():
                side.unlink()
    finally:
        for leftover in (copy, *(c for c, _ in sides)):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
