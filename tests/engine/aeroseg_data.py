"""Labelled data for the AerOSeg training tests: a patch of the Köln tile (a VRT reading the tile in
place) and polygons drawn on it, written with GDAL/OGR."""

from __future__ import annotations

from pathlib import Path

from osgeo import gdal, ogr, osr

KOELN = Path("/work/shared/data/oem_koeln_50.tif")
ORIGIN_X, ORIGIN_Y, PIXEL = 346000.0, 5648000.0, 0.5  # the tile's geotransform (EPSG:25832)
#: Patch of the tile (col, row, width, height) and two classes drawn on it in tile pixels (c0, r0, c1, r1):
#: solar panels on a roof and the field south of it.
PATCH = (460, 540, 128, 128)
BOXES = {"solar panel": (470, 545, 520, 600), "field": (540, 630, 588, 668)}


def patch_vrt(folder: Path, window=PATCH) -> str:
    path = folder / "koeln_patch.vrt"
    gdal.Translate(str(path), str(KOELN), format="VRT", srcWin=list(window))
    return str(path)


def box_geometry(box, transform=None):
    c0, r0, c1, r1 = box
    x0, x1 = ORIGIN_X + PIXEL * c0, ORIGIN_X + PIXEL * c1
    y0, y1 = ORIGIN_Y - PIXEL * r0, ORIGIN_Y - PIXEL * r1
    geometry = ogr.CreateGeometryFromWkt(f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))")
    if transform is not None:
        geometry.Transform(transform)
    return geometry


def write_polygons(path: Path, boxes: dict = BOXES, epsg: int = 25832, field: str = "class") -> str:
    """A GeoPackage with one polygon per box, its class name in ``field``, in EPSG ``epsg``."""
    source = osr.SpatialReference()
    source.ImportFromEPSG(25832)
    target = osr.SpatialReference()
    target.ImportFromEPSG(epsg)
    for srs in (source, target):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = None if epsg == 25832 else osr.CoordinateTransformation(source, target)
    data = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = data.CreateLayer("labels", target, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn(field, ogr.OFTString))
    for name, box in boxes.items():
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(box_geometry(box, transform))
        feature.SetField(field, name)
        layer.CreateFeature(feature)
    data = None
    return str(path)
