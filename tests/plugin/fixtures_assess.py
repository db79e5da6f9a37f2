"""Small maps and references for the accuracy-assessment tests, and a plain count to check them by.

Grids: EPSG:25832, 0.5 m pixels, top-left corner at ``ORIGIN``. Polygons are rectangles on pixel edges,
so whether a pixel lies inside one is unambiguous (its centre is inside or not).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr

ORIGIN = (356_000.0, 5_645_000.0)
PIXEL_M = 0.5
EPSG = 25832
MAP_CLASSES = ["building", "road", "tree"]  # raster values 1, 2, 3 (0 = unclassified)
COLOURS = [(220, 20, 60), (128, 128, 128), (34, 139, 34)]
IGNORE = 255
RECTANGLES_FIELD = "landcover"  # the reference polygons' class attribute


def write_class_raster(path: Path, labels: np.ndarray, names: list[str] = MAP_CLASSES) -> Path:
    """A class raster as the engine's ``segment`` writes it: uint8, colour table, category names
    (0 = "unclassified", i = class i)."""
    height, width = labels.shape
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), width, height, 1, gdal.GDT_Byte)
    dataset.SetGeoTransform((ORIGIN[0], PIXEL_M, 0.0, ORIGIN[1], 0.0, -PIXEL_M))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    dataset.SetProjection(srs.ExportToWkt())
    band = dataset.GetRasterBand(1)
    band.WriteArray(labels.astype(np.uint8))
    table = gdal.ColorTable()
    table.SetColorEntry(0, (0, 0, 0, 0))
    for value, rgb in enumerate(COLOURS[: len(names)], start=1):
        table.SetColorEntry(value, (*rgb, 255))
    band.SetRasterColorTable(table)
    band.SetCategoryNames(["unclassified", *names])
    dataset.FlushCache()
    dataset = None
    return path


def write_label_raster(path: Path, labels: np.ndarray, origin: tuple[float, float] = ORIGIN) -> Path:
    """A plain reference label raster (uint8 codes, no names) on the same 0.5 m grid shape."""
    height, width = labels.shape
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), width, height, 1, gdal.GDT_Byte)
    dataset.SetGeoTransform((origin[0], PIXEL_M, 0.0, origin[1], 0.0, -PIXEL_M))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    dataset.SetProjection(srs.ExportToWkt())
    dataset.GetRasterBand(1).WriteArray(labels.astype(np.uint8))
    dataset.FlushCache()
    dataset = None
    return path


def write_mapping(path: Path, mapping: dict) -> Path:
    path.write_text(json.dumps(mapping), encoding="utf-8")
    return path


def pixel_rectangle(col0: int, row0: int, col1: int, row1: int) -> tuple[float, float, float, float]:
    """Map coordinates (xmin, ymin, xmax, ymax) of pixel columns col0..col1-1 and rows row0..row1-1."""
    x0, y0 = ORIGIN
    return (x0 + col0 * PIXEL_M, y0 - row1 * PIXEL_M, x0 + col1 * PIXEL_M, y0 - row0 * PIXEL_M)


def rectangle_wkt(box: tuple[float, float, float, float]) -> str:
    xmin, ymin, xmax, ymax = box
    return f"POLYGON(({xmin} {ymin},{xmax} {ymin},{xmax} {ymax},{xmin} {ymax},{xmin} {ymin}))"


def write_polygons(path: Path, rectangles: list[tuple[tuple[int, int, int, int], str]], field: str) -> Path:
    """A GeoPackage of pixel-edge rectangles ``((col0, row0, col1, row1), class name)``."""
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    layer = source.CreateLayer("reference", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn(field, ogr.OFTString))
    for cells, name in rectangles:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField(field, name)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(rectangle_wkt(pixel_rectangle(*cells))))
        layer.CreateFeature(feature)
    source = None
    return path


def polygon_labels(shape: tuple[int, int], rectangles, names: list[str]) -> np.ndarray:
    """Reference codes per pixel (index into ``names`` + 1; 0 outside every rectangle), by pixel centres."""
    labels = np.zeros(shape, dtype=np.int64)
    for (col0, row0, col1, row1), name in rectangles:
        code = [n.lower() for n in names].index(name.lower()) + 1
        for row in range(shape[0]):
            for col in range(shape[1]):
                if col0 <= col < col1 and row0 <= row < row1:
                    labels[row, col] = code
    return labels


def count_pairs(
    reference: np.ndarray, prediction: np.ndarray, names: list[str]
) -> dict[tuple[str, str], int]:
    """Pixels per (reference class, map class), by a plain loop; reference code 0 is not assessed.
    Both arrays hold codes 1..len(names) for the same class order."""
    counts: dict[tuple[str, str], int] = {}
    for ref, pred in zip(reference.ravel().tolist(), prediction.ravel().tolist()):
        if ref == 0 or pred == 0:
            continue
        key = (names[ref - 1], names[pred - 1])
        counts[key] = counts.get(key, 0) + 1
    return counts


def matrix_by_name(report: dict) -> dict[tuple[str, str], int]:
    """The report's confusion matrix as {(reference class, map class): pixels}, zeros left out."""
    classes = report["classes"]
    return {
        (classes[r], classes[m]): int(value)
        for r, row in enumerate(report["confusion_matrix"])
        for m, value in enumerate(row)
        if value
    }
