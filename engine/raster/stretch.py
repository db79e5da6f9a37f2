"""Map any pixel type to the 8-bit RGB CLIP expects, with one rule for the whole requested extent.

Rule: 8-bit data is used as is (the references feed 8-bit imagery straight to CLIP). Any other type is
stretched per band linearly from its ``LOW_PERCENTILE`` to its ``HIGH_PERCENTILE`` value to 0..255
(clipped). The percentiles are computed once, from a decimated read of the whole requested window
(at most ``SAMPLE_SIZE`` pixels per side, GDAL uses overviews when present), over valid pixels only, so
every tile of a run uses the same stretch and no seam appears between tiles.

Nodata pixels must not look like content to the model: they are filled with each band's mean valid
value (after stretching), a neutral grey-ish colour of the scene, and excluded from the output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

LOW_PERCENTILE = 2.0
HIGH_PERCENTILE = 98.0
SAMPLE_SIZE = 1024


@dataclass(frozen=True)
class Stretch:
    """Per band: output = clip((value - low) / (high - low) * 255); ``fill`` replaces nodata (0..255)."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]
    fill: tuple[int, int, int]
    identity: bool  # 8-bit input used unchanged

    def to_uint8(self, data: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(3, h, w) raster values + (h, w) validity → (3, h, w) uint8 with nodata filled."""
        if self.identity:
            out = data.astype(np.uint8, copy=True)
        else:
            low = np.asarray(self.low, dtype=np.float64)[:, None, None]
            span = np.maximum(np.asarray(self.high, dtype=np.float64)[:, None, None] - low, 1e-12)
            scaled = (np.nan_to_num(data.astype(np.float64)) - low) / span * 255.0
            out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        if not valid.all():
            out[:, ~valid] = np.asarray(self.fill, dtype=np.uint8)[:, None]
        return out

    def to_float(self, data: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Like ``to_uint8`` but keeps the unrounded stretched values (float32) for resampling."""
        if self.identity:
            out = data.astype(np.float32)
        else:
            low = np.asarray(self.low, dtype=np.float64)[:, None, None]
            span = np.maximum(np.asarray(self.high, dtype=np.float64)[:, None, None] - low, 1e-12)
            scaled = (np.nan_to_num(data.astype(np.float64)) - low) / span * 255.0
            out = np.clip(scaled, 0, 255).astype(np.float32)
        if not valid.all():
            out[:, ~valid] = np.asarray(self.fill, dtype=np.float32)[:, None]
        return out

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "rule": "none (8-bit input)"
            if self.identity
            else f"per-band linear {LOW_PERCENTILE:g}-{HIGH_PERCENTILE:g} percentile to 0-255",
        }


def compute_stretch(source, window) -> Stretch:
    """The stretch for ``window`` (a PixelWindow) of ``source`` (a RasterSource), from a decimated sample."""
    scale = min(1.0, SAMPLE_SIZE / max(window.width, window.height))
    buf = (max(1, round(window.width * scale)), max(1, round(window.height * scale)))
    data, valid = source.read(window.xoff, window.yoff, window.width, window.height, buf_size=buf)
    identity = source.data_type == "Byte"
    low, high, fill = [], [], []
    for band in data:
        values = band[valid].astype(np.float64)
        if identity:
            low.append(0.0)
            high.append(255.0)
            fill.append(round(values.mean()) if values.size else 0)
            continue
        if values.size == 0:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = (float(v) for v in np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE]))
            if hi <= lo:
                hi = lo + 1.0
        low.append(lo)
        high.append(hi)
        mean = float(np.clip((values.mean() - lo) / (hi - lo) * 255.0, 0, 255)) if values.size else 0.0
        fill.append(round(mean))
    return Stretch(tuple(low), tuple(high), tuple(fill), identity)  # type: ignore[arg-type]
