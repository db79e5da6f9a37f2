"""Open any raster GDAL reads, pick its RGB bands, and read windows with a validity mask.

Reads are always windowed (``ReadAsArray`` of a rectangle), so memory follows the window, never the
raster. Validity comes from GDAL's mask bands (nodata value, alpha band or internal mask) of every
selected band, plus NaN for floating-point data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.raster.gdal_setup import gdal_module as _gdal
from engine.raster.geometry import IDENTITY_GEOTRANSFORM, read_geometry, warped_dataset

log = logging.getLogger(__name__)
# Longest run of rows fetched by one GDAL read when sampling rows (bounds the read buffer).
MAX_ROWS_PER_READ = 256


@dataclass(frozen=True)
class SourceInfo:
    path: str
    driver: str
    width: int
    height: int
    band_count: int
    bands: tuple[int, ...]  # 1-based band numbers used as R, G, B
    data_type: str
    georeferenced: bool
    has_nodata: bool
    geometry: str = "none"  # how the input is placed: geotransform, gcps, rpc or none


def parse_bands(text: str | list | tuple | None) -> tuple[int, ...] | None:
    """``"3,2,1"`` / ``[3, 2, 1]`` → (3, 2, 1); one band is repeated as grey. None keeps the default."""
    if text is None or text == "":
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        bands = tuple(int(str(p).strip()) for p in parts)
    except ValueError:
        raise UserError(f"bad --bands {text!r}: give band numbers like 1,2,3") from None
    if len(bands) not in (1, 3):
        raise UserError(f"bad --bands {text!r}: give three bands (R,G,B) or one (grey)")
    return bands


class RasterSource:
    """A raster opened read-only with its chosen bands. Use as a context manager or call ``close``."""

    def __init__(self, path: str | Path, bands: tuple[int, ...] | None = None, warp: bool = False) -> None:
        """``warp``: read through a north-up warped VRT of the raster (engine.raster.geometry) when it is
        placed by GCPs, RPCs or a rotated geotransform; ``geometry`` is then the warped grid's."""
        gdal = _gdal()
        self.path = str(path)
        if not Path(self.path).exists() and not self.path.startswith("/vsi"):
            raise UserError(f"input raster not found: {self.path}")
        try:
            self.dataset = gdal.Open(self.path, gdal.GA_ReadOnly)
        except RuntimeError as exc:
            raise UserError(f"cannot read {self.path} as a raster: {exc}") from None
        if self.dataset is None or self.dataset.RasterCount == 0:
            raise UserError(f"cannot read {self.path} as a raster: it has no raster bands")
        self.bands = self._choose_bands(bands)
        self.input_geometry = self.geometry = read_geometry(self.dataset)
        self._unwarped = None
        if warp:
            # The warped VRT reads through the original dataset, which therefore stays open.
            self._unwarped = self.dataset
            self.dataset, self.geometry = warped_dataset(self.dataset, self.geometry, self.path)
        self._bands = [self.dataset.GetRasterBand(b) for b in self.bands]
        self.width = self.dataset.RasterXSize
        self.height = self.dataset.RasterYSize
        self.projection_wkt = self.geometry.crs_wkt
        self.georeferenced = self.geometry.georeferenced
        self.geotransform = self.geometry.geotransform or IDENTITY_GEOTRANSFORM
        self.data_type = gdal.GetDataTypeName(self._bands[0].DataType)
        self.is_float = self.data_type.startswith("Float") or self.data_type.startswith("CFloat")
        self._masks = []
        for band in self._bands:
            flags = band.GetMaskFlags()
            self._masks.append(None if flags == gdal.GMF_ALL_VALID else band.GetMaskBand())
        self.has_nodata = any(m is not None for m in self._masks) or self.is_float

    def _choose_bands(self, bands: tuple[int, ...] | None) -> tuple[int, ...]:
        gdal = _gdal()
        count = self.dataset.RasterCount
        if bands is not None:
            for b in bands:
                if not 1 <= b <= count:
                    raise UserError(
                        f"band {b} does not exist: {self.path} has {count} band{'s' * (count != 1)} "
                        f"(numbered 1 to {count})"
                    )
            return bands if len(bands) == 3 else (bands[0],) * 3
        interp = {self.dataset.GetRasterBand(i).GetColorInterpretation(): i for i in range(count, 0, -1)}
        rgb = [interp.get(c) for c in (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand)]
        if all(rgb):
            return tuple(rgb)  # type: ignore[arg-type]
        if count >= 3:
            return (1, 2, 3)
        log.warning("%s has %d band(s): using band 1 as grey for R, G and B", self.path, count)
        return (1, 1, 1)

    def info(self) -> SourceInfo:
        """The input file as it is (not its warped view: that is the output grid's business)."""
        original = self._unwarped if self._unwarped is not None else self.dataset
        return SourceInfo(
            self.path,
            original.GetDriver().ShortName,
            original.RasterXSize,
            original.RasterYSize,
            original.RasterCount,
            self.bands,
            self.data_type,
            self.georeferenced,
            self.has_nodata,
            self.input_geometry.kind,
        )

    def read(
        self, xoff: int, yoff: int, width: int, height: int, buf_size: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bands (3, h, w) in the raster's dtype and validity (h, w) bool for a pixel window.

        ``buf_size`` (w, h) reads decimated (GDAL picks overviews), for statistics only.
        """
        bw, bh = buf_size or (width, height)
        kwargs = dict(xoff=xoff, yoff=yoff, win_xsize=width, win_ysize=height, buf_xsize=bw, buf_ysize=bh)
        cache: dict[int, np.ndarray] = {}
        for number, band in zip(self.bands, self._bands):
            if number not in cache:
                cache[number] = self._read_band(band, number, kwargs)
        data = np.stack([cache[b] for b in self.bands])
        valid = np.ones((bh, bw), dtype=bool)
        for number, mask in zip(self.bands, self._masks):
            if mask is not None:
                valid &= self._read_band(mask, number, kwargs, "mask of band") > 0
        if self.is_float:
            valid &= np.isfinite(data).all(axis=0)
        return data, valid

    def _read_band(self, band, number: int, window: dict, what: str = "band") -> np.ndarray:
        """``band.ReadAsArray`` of ``window``; a failed read is a UserError naming file, band and window.

        The one place read failures become messages: GDAL opens truncated or corrupt files and fails only
        when a damaged block is read, halfway through a run (with exceptions on it raises RuntimeError;
        without, it returns None).
        """
        try:
            array = band.ReadAsArray(**window)
        except RuntimeError as exc:
            array, detail = None, str(exc).strip()
        else:
            detail = "GDAL returned no data"
        if array is None:
            x0, y0 = window["xoff"], window["yoff"]
            x1, y1 = x0 + window["win_xsize"], y0 + window["win_ysize"]
            raise UserError(
                f"cannot read {self.path}: {what} {number}, pixels x {x0}-{x1}, y {y0}-{y1} ({detail}); "
                "the file is damaged or incomplete (or a file it refers to is missing): copy it again "
                "or re-export it"
            )
        return array

    def read_rows_cols(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bands (3, len(rows), len(cols)) and validity at the given sorted unique raster rows/columns.

        Reads only the needed rows, in contiguous runs of at most ``MAX_ROWS_PER_READ``, each over the
        columns' bounding span, keeping memory bounded even when the working grid is much coarser.
        """
        x0, x1 = int(cols[0]), int(cols[-1]) + 1
        local_cols = cols - x0
        data_parts, valid_parts = [], []
        start = 0
        while start < len(rows):
            end = start + 1
            while end < len(rows) and rows[end] == rows[end - 1] + 1 and end - start < MAX_ROWS_PER_READ:
                end += 1
            data, valid = self.read(x0, int(rows[start]), x1 - x0, end - start)
            data_parts.append(data[:, :, local_cols])
            valid_parts.append(valid[:, local_cols])
            start = end
        return np.concatenate(data_parts, axis=1), np.concatenate(valid_parts, axis=0)

    def close(self) -> None:
        self._bands = []
        self._masks = []
        self.dataset = None
        self._unwarped = None

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
