"""Rasters placed by ground control points or RPCs, built with GDAL for engine (and plugin) tests.

GCP files are made the way a georeferenced scan is: ``gdal.Translate(GCPs=...)`` of an image with no
geotransform. RPC files carry an RPC00B metadata domain on a plain GeoTIFF, as satellite scenes do.
"""

from __future__ import annotations

import numpy as np
from osgeo import gdal, osr

gdal.UseExceptions()

#: 1 m pixels in UTM 32N, rotated a little: the "true" placement the GCPs of the tests are sampled from.
ROTATED_UTM = (400000.0, 0.985, 0.17, 5600000.0, 0.17, -0.985)


def utm32_wkt() -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    return srs.ExportToWkt()


def plain_image(path, width: int, height: int, seed: int = 0) -> str:
    """A random RGB uint8 GeoTIFF without any georeferencing."""
    rng = np.random.default_rng(seed)
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), width, height, 3, gdal.GDT_Byte)
    for band in range(3):
        dataset.GetRasterBand(band + 1).WriteArray(rng.integers(0, 256, (height, width), dtype=np.uint8))
    dataset = None
    return str(path)


def affine(gt, pixel: float, line: float) -> tuple[float, float]:
    return gt[0] + pixel * gt[1] + line * gt[2], gt[3] + pixel * gt[4] + line * gt[5]


def control_points(width: int, height: int, gt=ROTATED_UTM, bend: float = 0.0, per_side: int = 4) -> list:
    """GCPs on a ``per_side``² grid over the raster, at ``gt``'s ground position plus ``bend`` metres of
    a quadratic distortion (0: exactly affine, so GDAL's polynomial reproduces ``gt``)."""
    points = []
    for i in range(per_side):
        for j in range(per_side):
            pixel, line = width * i / (per_side - 1), height * j / (per_side - 1)
            x, y = affine(gt, pixel, line)
            u, v = pixel / width - 0.5, line / height - 0.5
            points.append(gdal.GCP(x + bend * u * v, y + bend * u * u, 0.0, pixel, line))
    return points


def gcp_raster(path, width: int, height: int, *, gt=ROTATED_UTM, bend: float = 0.0, fmt="GTiff") -> str:
    """An RGB raster placed only by GCPs in UTM 32N (``fmt`` "VRT": a GCP VRT over a plain GeoTIFF)."""
    plain = plain_image(f"{path}.plain.tif", width, height) if fmt == "VRT" else None
    if plain is None:
        plain = plain_image("/vsimem/plain.tif", width, height)
    gdal.Translate(
        str(path), plain, format=fmt, GCPs=control_points(width, height, gt, bend), outputSRS=utm32_wkt()
    )
    if plain.startswith("/vsimem/"):
        gdal.Unlink(plain)
    return str(path)


def rpc_metadata(width: int, height: int, lon: float = 7.0, lat: float = 50.5) -> dict:
    """RPC00B for a scene of ``width`` × ``height`` pixels centred on lon/lat: ~2 m pixels, rotated by
    the cross terms, columns growing east and lines growing south."""
    zeros = ["0"] * 16  # RPC00B has 20 coefficients per polynomial

    def coefficients(first: list[str]) -> str:
        return " ".join(first + zeros)

    return {
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
        # 1, L, P, H: line follows -latitude, sample follows longitude, each with a little of the other.
        "LINE_NUM_COEFF": coefficients(["0", "0.15", "-1", "0"]),
        "LINE_DEN_COEFF": coefficients(["1", "0", "0", "0"]),
        "SAMP_NUM_COEFF": coefficients(["0", "1", "0.1", "0"]),
        "SAMP_DEN_COEFF": coefficients(["1", "0", "0", "0"]),
    }


def rpc_raster(path, width: int, height: int, **where) -> str:
    """An RGB GeoTIFF placed only by RPCs (stored in the TIFF's RPC tag)."""
    plain_image(path, width, height)
    dataset = gdal.Open(str(path), gdal.GA_Update)
    dataset.SetMetadata(rpc_metadata(width, height, **where), "RPC")
    dataset = None
    return str(path)


def transformer_of(path):
    """GDAL's own transformer of a file (pixel/line → ground), with the dataset kept alive."""
    dataset = gdal.Open(str(path))
    return gdal.Transformer(dataset, None, []), dataset


def to_ground(path, points) -> np.ndarray:
    """(n, 2) ground coordinates of pixel/line ``points`` through the file's own transformer."""
    transformer, _dataset = transformer_of(path)
    mapped, ok = transformer.TransformPoints(0, [tuple(map(float, p)) for p in points])
    assert all(ok)
    return np.array([m[:2] for m in mapped])
