"""Class rasters, label rasters and polygons for the accuracy tests, and a plain per-pixel assessment
written independently of engine.assess (the figures every test compares against)."""

from __future__ import annotations

import json

import numpy as np
from osgeo import gdal, ogr, osr

gdal.UseExceptions()


def write_class_raster(
    path, labels, names, *, gt=(500000.0, 2.0, 0.0, 5650000.0, 0.0, -2.0), epsg=32632, synonyms=None
):
    """A uint8 class raster like segment's: category names [unclassified, *names]; sidecar with synonyms."""
    height, width = labels.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, 1, gdal.GDT_Byte)
    if gt is not None:
        ds.SetGeoTransform(gt)
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetProjection(srs.ExportToWkt())
    band = ds.GetRasterBand(1)
    band.WriteArray(labels.astype(np.uint8))
    band.SetCategoryNames(["unclassified", *names])
    ds = None
    vocabulary = [{"name": n, "synonyms": [n, *(synonyms or {}).get(n, [])]} for n in names]
    sidecar = str(path).rsplit(".", 1)[0] + ".json"
    with open(sidecar, "w", encoding="utf-8") as stream:
        json.dump({"vocabulary": vocabulary}, stream)
    return str(path)


def write_label_raster(path, codes, *, gt, epsg, nodata=None, names=None, dtype=gdal.GDT_Byte):
    height, width = codes.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, 1, dtype)
    if gt is not None:
        ds.SetGeoTransform(gt)
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetProjection(srs.ExportToWkt())
    band = ds.GetRasterBand(1)
    band.WriteArray(codes)
    if nodata is not None:
        band.SetNoDataValue(nodata)
    if names is not None:
        band.SetCategoryNames(names)
    ds = None
    return str(path)


def write_polygons(path, polygons, *, epsg, field="landcover"):
    """GeoJSON polygons: ``polygons`` is a list of (WKT, class text)."""
    driver = ogr.GetDriverByName("GeoJSON")
    ds = driver.CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    layer = ds.CreateLayer("reference", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn(field, ogr.OFTString))
    for wkt, value in polygons:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField(field, value)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    ds = None
    return str(path)


def plain_assessment(pairs, names):
    """Every figure from a list of (reference class name, map class name) pairs, by plain loops.

    Returns {"confusion": list of lists, "per_class": {name: {iou, precision, recall, f1}}, "oa", "kappa",
    "miou", "mf1"} with None for undefined figures; means skip undefined values and "unclassified".
    """
    k = len(names)
    confusion = [[0] * k for _ in range(k)]
    for reference, mapped in pairs:
        confusion[names.index(reference)][names.index(mapped)] += 1
    total = sum(sum(row) for row in confusion)
    per_class = {}
    for c, name in enumerate(names):
        tp = confusion[c][c]
        ref_total = sum(confusion[c][j] for j in range(k))
        map_total = sum(confusion[i][c] for i in range(k))
        per_class[name] = {
            "iou": tp / (ref_total + map_total - tp) if ref_total + map_total - tp else None,
            "precision": tp / map_total if map_total else None,
            "recall": tp / ref_total if ref_total else None,
            "f1": 2 * tp / (ref_total + map_total) if ref_total + map_total else None,
        }
    oa = kappa = None
    if total:
        oa = sum(confusion[c][c] for c in range(k)) / total
        chance = 0.0
        for c in range(k):
            chance += sum(confusion[c][j] for j in range(k)) * sum(confusion[i][c] for i in range(k))
        chance /= total * total
        kappa = (oa - chance) / (1 - chance) if chance < 1 else None

    def mean(key):
        values = [per_class[n][key] for n in names if n != "unclassified" and per_class[n][key] is not None]
        return sum(values) / len(values) if values else None

    return {
        "confusion": confusion,
        "per_class": per_class,
        "oa": oa,
        "kappa": kappa,
        "miou": mean("iou"),
        "mf1": mean("f1"),
    }
