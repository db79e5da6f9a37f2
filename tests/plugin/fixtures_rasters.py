"""Small GeoTIFFs written with GDAL for plugin tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal, osr


def write_geotiff(
    path: Path,
    bands: np.ndarray,
    epsg: int = 25832,
    origin: tuple[float, float] = (356_000.0, 5_645_000.0),
    pixel: float = 0.5,
    colour_table: dict[int, tuple[int, int, int]] | None = None,
) -> Path:
    """``bands``: (count, height, width) uint8; ``origin`` is the top-left corner in the CRS."""
    count, height, width = bands.shape
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), width, height, count, gdal.GDT_Byte)
    dataset.SetGeoTransform((origin[0], pixel, 0.0, origin[1], 0.0, -pixel))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    dataset.SetProjection(srs.ExportToWkt())
    for index in range(count):
        dataset.GetRasterBand(index + 1).WriteArray(bands[index])
    if colour_table:
        table = gdal.ColorTable()
        for value, rgb in colour_table.items():
            table.SetColorEntry(value, (*rgb, 255))
        dataset.GetRasterBand(1).SetRasterColorTable(table)
    dataset.FlushCache()
    dataset = None
    return path


def read_bands(path: Path) -> np.ndarray:
    dataset = gdal.Open(str(path))
    return np.stack([dataset.GetRasterBand(i + 1).ReadAsArray() for i in range(dataset.RasterCount)])
