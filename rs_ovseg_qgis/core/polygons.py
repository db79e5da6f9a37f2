"""Class raster → GeoPackage polygons (GDAL's polygonize), with class name and area attributes.

Pure GDAL/OGR: safe in a worker thread. Unclassified pixels (value 0) make no polygons. A class raster
placed by GCPs or RPCs (the engine keeps an input's) is polygonized through GDAL's warper onto the
north-up grid QGIS draws it on, so the polygons lie in the GCPs' CRS (RPCs: WGS 84) over the pixels shown.
"""

from __future__ import annotations

import os
from pathlib import Path

from osgeo import gdal, ogr, osr
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsDistanceArea,
    QgsGeometry,
)

from .vocabulary import Vocabulary

LAYER_NAME = "classes"
# Neighbours that join pixels into one polygon: 4 (edges only) keeps diagonal touches apart.
CONNECTEDNESS = 4


def _area_factor(srs: osr.SpatialReference | None) -> float | None:
    """Square metres per square CRS unit, or None for geographic/unknown CRSs (measured on the ellipsoid)."""
    if srs is None or srs.IsGeographic() or not srs.IsProjected():
        return None
    return srs.GetLinearUnits() ** 2


def polygonize(class_raster: str | Path, out_gpkg: str | Path, vocabulary: Vocabulary) -> Path:
    """Write one polygon per connected patch of a class, fields ``class_id``, ``class_name``, ``area_m2``.

    Written to a temporary file beside ``out_gpkg`` and renamed, so a failure leaves nothing behind.
    Refuses to replace an existing file.
    """
    out_gpkg = Path(out_gpkg)
    if out_gpkg.exists():
        raise FileExistsError(f"{out_gpkg} already exists")
    opened = gdal.Open(str(class_raster))
    if opened is None:
        raise OSError(f"cannot open the class raster {class_raster}")
    raster = _on_a_north_up_grid(opened)  # reads through ``opened``, which stays open meanwhile
    band = raster.GetRasterBand(1)
    srs = raster.GetSpatialRef()
    temporary = out_gpkg.with_name(f".partial-{out_gpkg.name}")
    if temporary.exists():
        temporary.unlink()
    try:
        source = ogr.GetDriverByName("GPKG").CreateDataSource(str(temporary))
        layer = source.CreateLayer(LAYER_NAME, srs=srs, geom_type=ogr.wkbPolygon)
        layer.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
        name_field = ogr.FieldDefn("class_name", ogr.OFTString)
        layer.CreateField(name_field)
        layer.CreateField(ogr.FieldDefn("area_m2", ogr.OFTReal))
        # The band is its own mask: zero (unclassified) pixels are skipped.
        gdal.Polygonize(band, band, layer, 0, [f"8CONNECTED={'YES' if CONNECTEDNESS == 8 else 'NO'}"])
        _fill_attributes(layer, vocabulary, srs)
        source.FlushCache()
        source = None
        os.replace(temporary, out_gpkg)
    finally:
        if temporary.exists():
            temporary.unlink()
    return out_gpkg


def _on_a_north_up_grid(raster: gdal.Dataset) -> gdal.Dataset:
    """The raster itself when a geotransform places it; if GCPs or RPCs do, a lazy warped VRT of it with
    nearest-neighbour classes (GDAL's default GCP/RPC transformer, as QGIS uses to draw it)."""
    placed_by_transformer = raster.GetGCPCount() > 0 or bool(raster.GetMetadata("RPC"))
    if raster.GetGeoTransform(can_return_null=True) is not None or not placed_by_transformer:
        return raster
    return gdal.Warp("", raster, format="VRT", resampleAlg="near")


def _fill_attributes(layer: ogr.Layer, vocabulary: Vocabulary, srs: osr.SpatialReference | None) -> None:
    names = {index: item.name for index, item in enumerate(vocabulary.classes, start=1)}
    factor = _area_factor(srs)
    ellipsoidal = None
    if factor is None and srs is not None:  # geographic CRS: measure on the WGS 84 ellipsoid
        ellipsoidal = QgsDistanceArea()
        crs = QgsCoordinateReferenceSystem.fromWkt(srs.ExportToWkt())
        ellipsoidal.setSourceCrs(crs, QgsCoordinateTransformContext())
        ellipsoidal.setEllipsoid("EPSG:7030")
    layer.StartTransaction()
    for feature in layer:
        class_id = feature.GetFieldAsInteger("class_id")
        geometry = feature.GetGeometryRef()
        if factor is not None:
            area = geometry.GetArea() * factor
        elif ellipsoidal is not None:
            wkb = geometry.ExportToWkb()
            qgs_geometry = QgsGeometry()
            qgs_geometry.fromWkb(bytes(wkb))
            area = ellipsoidal.measureArea(qgs_geometry)
        else:
            area = geometry.GetArea()
        feature.SetField("class_name", names.get(class_id, f"class {class_id}"))
        feature.SetField("area_m2", float(area))
        layer.SetFeature(feature)
    layer.CommitTransaction()
