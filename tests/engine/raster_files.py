"""Small GeoTIFFs written for engine tests (one writer for every test module)."""

from __future__ import annotations

import numpy as np
from osgeo import gdal, osr

#: 1 m pixels in UTM 32N: the grid of the CLI and worker tests.
UTM_1M = (400000.0, 1.0, 0.0, 5600000.0, 0.0, -1.0)


def write_raster(path, array, *, gt=(500000.0, 0.5, 0.0, 5650000.0, 0.0, -0.5), epsg=25832, nodata=None):
    """(bands, H, W) uint8 or uint16 ``array`` as a GeoTIFF (no georeference when ``gt`` is None)."""
    bands, height, width = array.shape
    dtype = gdal.GDT_Byte if array.dtype == np.uint8 else gdal.GDT_UInt16
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, bands, dtype)
    if gt is not None:
        ds.SetGeoTransform(gt)
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetProjection(srs.ExportToWkt())
    for i in range(bands):
        band = ds.GetRasterBand(i + 1)
        band.WriteArray(array[i])
        if nodata is not None:
            band.SetNoDataValue(nodata)
    ds = None
    return str(path)


def random_bands(width: int, height: int, bands: int = 3, seed: int = 0) -> np.ndarray:
    """(bands, height, width) uniform random uint8, band by band from one seeded generator."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, 256, (height, width), dtype=np.uint8) for _ in range(bands)])


def random_raster(path, width: int, height: int, *, bands: int = 3, georeferenced: bool = True) -> str:
    """A random uint8 raster on the 1 m UTM 32N grid (or none)."""
    grid = UTM_1M if georeferenced else None
    return write_raster(path, random_bands(width, height, bands), gt=grid, epsg=32632)
