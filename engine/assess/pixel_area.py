"""Ground area of a grid's pixels in square metres, per pixel row.

Projected grids: every pixel has the same area, |det| of the geotransform's 2×2 part times the CRS
unit squared. Geographic grids (degrees): a pixel's area depends on its latitude, so each row gets the
area of its latitude band on the CRS's ellipsoid (the authalic-latitude formula of Snyder 1987,
"Map Projections: A Working Manual", eq. 3-12, for the area between the equator and a latitude), times
the pixel's share of the full circle of longitude. Rotated geographic grids use the row centre's band.
Grids without georeferencing have no ground area: ``None``.
"""

from __future__ import annotations

import math

import numpy as np

SQUARE_METRES_PER_HECTARE = 10_000.0


def _zone_area(latitude_rad: np.ndarray, a: float, e2: float) -> np.ndarray:
    """Area (m²) of the ellipsoid between the equator and ``latitude_rad``, over all longitudes (signed)."""
    s = np.sin(latitude_rad)
    if e2 < 1e-15:  # a sphere
        return 2.0 * math.pi * a * a * s
    e = math.sqrt(e2)
    q = s / (1.0 - e2 * s * s) - (1.0 / (2.0 * e)) * np.log((1.0 - e * s) / (1.0 + e * s))
    return math.pi * a * a * (1.0 - e2) * q


def row_areas(geotransform, projection_wkt: str, row_start: int, rows: int) -> np.ndarray | None:
    """(rows,) float64 m² per pixel of rows ``row_start … row_start+rows-1``; None without a ground unit.

    ``geotransform`` is GDAL's six numbers for the grid whose rows are counted from 0.
    """
    if geotransform is None or not projection_wkt:
        return None
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromWkt(projection_wkt)
    gt = tuple(float(v) for v in geotransform)
    det = abs(gt[1] * gt[5] - gt[2] * gt[4])
    if not srs.IsGeographic():
        unit = float(srs.GetLinearUnits() or 1.0)
        return np.full(rows, det * unit * unit)
    a = float(srs.GetSemiMajor())
    inverse_flattening = float(srs.GetInvFlattening() or 0.0)
    f = 1.0 / inverse_flattening if inverse_flattening > 0 else 0.0
    e2 = f * (2.0 - f)
    to_rad = float(srs.GetAngularUnits() or math.pi / 180.0)  # radians per CRS unit
    # Row r spans latitudes top + r·dy … top + (r+1)·dy at its centre column (north-up: gt[4] = 0).
    y_step = gt[5]
    index = np.arange(row_start, row_start + rows, dtype=np.float64)
    top = gt[3] + index * y_step
    bottom = top + y_step
    top = np.clip(top * to_rad, -math.pi / 2, math.pi / 2)
    bottom = np.clip(bottom * to_rad, -math.pi / 2, math.pi / 2)
    band = np.abs(_zone_area(top, a, e2) - _zone_area(bottom, a, e2))
    # A pixel's share of the band: its longitude width over the full circle (det / |dy| = dx when north-up).
    width_rad = (det / abs(y_step) if y_step else abs(gt[1])) * to_rad
    return band * width_rad / (2.0 * math.pi)
