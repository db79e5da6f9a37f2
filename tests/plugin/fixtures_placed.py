"""Rasters placed by ground control points or RPCs, built with GDAL, for plugin tests.

Made the way a scan referenced in QGIS's Georeferencer or a raw satellite scene comes: GCPs written by
``gdal.Translate(GCPs=...)`` on an image without a geotransform; RPC00B metadata on a plain GeoTIFF.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal, osr

# 1 m pixels in ETRS89 / UTM 32N, turned ~10 degrees: where the GCPs are sampled from (plus a bend).
ROTATED = (356_000.0, 0.985, 0.17, 5_645_000.0, 0.17, -0.985)


def _plain(path: Path, width: int, height: int) -> Path:
    rng = np.random.default_rng(3)
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), width, height, 3, gdal.GDT_Byte)
    for band in range(3):
        dataset.GetRasterBand(band + 1).WriteArray(rng.integers(0, 256, (height, width), dtype=np.uint8))
    dataset = None
    return path


def gcp_geotiff(path: Path, width: int, height: int, bend: float = 3.0) -> Path:
    """An RGB GeoTIFF placed only by 16 GCPs in EPSG:25832 (a little curved: a real polynomial fit)."""
    plain = _plain(path.with_name(path.stem + "_plain.tif"), width, height)
    points = []
    for i in range(4):
        for j in range(4):
            pixel, line = width * i / 3, height * j / 3
            x = ROTATED[0] + pixel * ROTATED[1] + line * ROTATED[2]
            y = ROTATED[3] + pixel * ROTATED[4] + line * ROTATED[5]
            u, v = pixel / width - 0.5, line / height - 0.5
            points.append(gdal.GCP(x + bend * u * v, y + bend * u * u, 0.0, pixel, line))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(25832)
    gdal.Translate(str(path), str(plain), GCPs=points, outputSRS=srs.ExportToWkt())
    plain.unlink()
    return path


def rpc_geotiff(path: Path, width: int, height: int, lon: float = 7.0, lat: float = 50.5) -> Path:
    """An RGB GeoTIFF placed only by RPC00B metadata: ~2 m pixels, a little rotated, centred on lon/lat."""
    _plain(path, width, height)

    def coefficients(first: list[str]) -> str:
        return " ".join(first + ["0"] * (20 - len(first)))

    rpc = {
        "LINE_OFF": str(height / 2),
        "SAMP_OFF": str(width / 2),
        "LAT_OFF": str(lat),
        "LONG_OFF": str(lon),
        "HEIGHT_OFF": "120",
        "LINE_SCALE": str(height / 2),
        "SAMP_SCALE": str(width / 2),
        "LAT_SCALE": str(height / 2 * 2.0 / 111_000),
        "LONG_SCALE": str(width / 2 * 2.0 / 70_000),
        "HEIGHT_SCALE": "500",
        # Terms 1, L, P, H of RPC00B: lines follow -latitude, samples longitude, each with some of the other.
        "LINE_NUM_COEFF": coefficients(["0", "0.15", "-1", "0"]),
        "LINE_DEN_COEFF": coefficients(["1"]),
        "SAMP_NUM_COEFF": coefficients(["0", "1", "0.1", "0"]),
        "SAMP_DEN_COEFF": coefficients(["1"]),
    }
    dataset = gdal.Open(str(path), gdal.GA_Update)
    dataset.SetMetadata(rpc, "RPC")
    dataset = None
    return path
