"""Reference labels on the map's grid, read window by window.

A label raster on the map's own grid is read as it is. On any other grid or CRS it is warped onto the
map's grid by GDAL (nearest neighbour: labels are never averaged) through a virtual warped dataset, so
each window is warped when read and memory follows the window. Polygons are burnt onto the map's grid
with ``gdal.Rasterize`` (all-touched off: a pixel is labelled when its centre falls inside a polygon)
into a temporary tiled GeoTIFF; pixels outside every polygon are not assessed.
Reference values are integer codes; names come from the raster's category names or, for a text class
attribute, from the attribute's values (codes 1..K in order of first appearance).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.raster.gdal_setup import gdal_module

#: Code marking "no reference here" (outside the reference, its nodata, outside every polygon).
NO_REFERENCE = int(np.iinfo(np.int32).min)
#: Attribute names tried, in order, when no class field is given for polygons.
DEFAULT_CLASS_FIELDS = ("class", "classname", "class_name", "label", "name", "category", "landcover")


@dataclass(frozen=True)
class TargetGrid:
    """The assessed part of the map: a pixel window of it and that window's georeferencing."""

    xoff: int
    yoff: int
    width: int
    height: int
    geotransform: tuple[float, ...] | None  # of the window's corner
    projection_wkt: str


@dataclass
class Reference:
    """Reads reference codes for windows of the target grid; ``close`` removes temporary files."""

    path: str
    kind: str  # "raster" | "polygons"
    how: str  # "same grid" | "warped (nearest)" | "rasterised"
    names: dict[int, str] | None  # code → class name, when the reference names its classes
    field_name: str | None = None
    _dataset: object = None
    _band: object = None
    _offset: tuple[int, int] = (0, 0)
    _nodata: float | None = None
    _temporary: str | None = None
    notes: list[str] = field(default_factory=list)

    def read(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        """(height, width) int64 codes of the window at (x, y) of the target grid; NO_REFERENCE where
        nothing is known."""
        data = self._band.ReadAsArray(self._offset[0] + x, self._offset[1] + y, width, height)
        if data.dtype.kind == "f":
            missing = ~np.isfinite(data)
            codes = np.rint(np.where(missing, 0, data)).astype(np.int64)
            codes[missing] = NO_REFERENCE
        else:
            codes = data.astype(np.int64)
        if self._nodata is not None and math.isfinite(self._nodata):
            codes[data == self._nodata] = NO_REFERENCE
        return codes

    def close(self) -> None:
        self._band = None
        self._dataset = None
        if self._temporary:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None


def _srs(wkt: str):
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _same_grid(dataset, target: TargetGrid, map_size: tuple[int, int]) -> bool:
    if (dataset.RasterXSize, dataset.RasterYSize) != map_size:
        return False
    wkt = dataset.GetProjection() or ""
    if target.geotransform is None:
        return not wkt
    if not wkt or not _srs(wkt).IsSame(_srs(target.projection_wkt)):
        return False
    gt = dataset.GetGeoTransform()
    full = _map_geotransform(target)
    tolerance = 1e-6 * max(abs(full[1]), abs(full[5]))
    return all(abs(a - b) <= tolerance for a, b in zip(gt, full))


def _map_geotransform(target: TargetGrid) -> tuple[float, ...]:
    """Geotransform of the whole map from the window's (shifted back by the window's offset)."""
    gt = target.geotransform
    return (
        gt[0] - target.xoff * gt[1] - target.yoff * gt[2],
        gt[1],
        gt[2],
        gt[3] - target.xoff * gt[4] - target.yoff * gt[5],
        gt[4],
        gt[5],
    )


def _category_names(band) -> dict[int, str] | None:
    names = band.GetCategoryNames() or []
    named = {code: str(name) for code, name in enumerate(names) if name}
    return named or None


def open_reference(
    path: str, target: TargetGrid, map_size: tuple[int, int], field_name: str | None = None
) -> Reference:
    """The reference at ``path`` (raster or polygons) on ``target``'s grid."""
    gdal = gdal_module()
    if not Path(path).exists() and not str(path).startswith("/vsi"):
        raise UserError(f"reference not found: {path}")
    try:
        dataset = gdal.OpenEx(str(path), gdal.OF_RASTER | gdal.OF_VECTOR | gdal.OF_READONLY)
    except RuntimeError as exc:
        raise UserError(f"cannot open the reference {path}: {exc}") from None
    if dataset is None:
        raise UserError(f"cannot open the reference {path}: not a raster or vector GDAL reads")
    if dataset.RasterCount > 0:
        return _raster_reference(str(path), dataset, target, map_size, field_name)
    if dataset.GetLayerCount() > 0:
        return _polygon_reference(str(path), dataset, target, field_name)
    raise UserError(f"the reference {path} has neither raster bands nor vector layers")


def _raster_reference(path, dataset, target, map_size, field_name) -> Reference:
    gdal = gdal_module()
    dataset.GetMetadata()  # loads the PAM side file with category names (GDAL 3.6 does it lazily)
    band = dataset.GetRasterBand(1)
    names = _category_names(band)
    notes = []
    if field_name:
        notes.append(f"--reference-field {field_name} ignored: the reference is a raster")
    if dataset.RasterCount > 1:
        notes.append(f"the reference has {dataset.RasterCount} bands: band 1 holds the labels read")
    if band.DataType not in (gdal.GDT_Byte, gdal.GDT_UInt16, gdal.GDT_Int16, gdal.GDT_UInt32, gdal.GDT_Int32):
        notes.append("the reference's values are not integers: they are rounded to the nearest integer")
    nodata = band.GetNoDataValue()
    if _same_grid(dataset, target, map_size):
        return Reference(
            path,
            "raster",
            "same grid",
            names,
            None,
            dataset,
            band,
            (target.xoff, target.yoff),
            nodata,
            notes=notes,
        )
    georeferenced = bool(dataset.GetProjection()) and dataset.GetGeoTransform(can_return_null=True)
    if target.geotransform is None or not georeferenced:
        raise UserError(
            f"the reference {path} is not on the map's grid and "
            + ("the map has no georeferencing" if target.geotransform is None else "has no georeferencing")
            + ": give a reference on the map's pixel grid or georeference both"
        )
    folder = tempfile.mkdtemp(prefix="rs-ovseg-reference-")
    gt = target.geotransform
    xs = [gt[0] + i * gt[1] + j * gt[2] for i in (0, target.width) for j in (0, target.height)]
    ys = [gt[3] + i * gt[4] + j * gt[5] for i in (0, target.width) for j in (0, target.height)]
    try:
        warped = gdal.Warp(
            str(Path(folder) / "reference.vrt"),
            dataset,
            options=gdal.WarpOptions(
                format="VRT",
                outputBounds=(min(xs), min(ys), max(xs), max(ys)),
                width=target.width,
                height=target.height,
                dstSRS=target.projection_wkt,
                resampleAlg="near",
                errorThreshold=0.0,  # exact transformation per pixel: labels sit on exact cells
                outputType=gdal.GDT_Int32,
                dstNodata=NO_REFERENCE,
            ),
        )
    except RuntimeError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise UserError(f"cannot bring the reference {path} onto the map's grid: {exc}") from None
    return Reference(
        path,
        "raster",
        "warped (nearest)",
        names,
        None,
        warped,
        warped.GetRasterBand(1),
        (0, 0),
        None,
        _temporary=folder,
        notes=notes,
    )


def _choose_field(layer, field_name: str | None, path: str) -> tuple[str, bool]:
    """(field name, is text) of the class attribute."""
    definition = layer.GetLayerDefn()
    fields = {
        definition.GetFieldDefn(i).GetName(): definition.GetFieldDefn(i)
        for i in range(definition.GetFieldCount())
    }
    if not fields:
        raise UserError(f"the polygons in {path} have no attributes: they need a class attribute")
    if field_name is None:
        by_lower = {name.lower(): name for name in fields}
        field_name = next((by_lower[c] for c in DEFAULT_CLASS_FIELDS if c in by_lower), None)
        if field_name is None:
            raise UserError(
                f"which attribute of {path} holds the class? "
                f"pass --reference-field, one of: {', '.join(fields)}"
            )
    if field_name not in fields:
        raise UserError(
            f"the polygons in {path} have no attribute {field_name!r}; they have: {', '.join(fields)}"
        )
    from osgeo import ogr

    kind = fields[field_name].GetType()
    return field_name, kind not in (ogr.OFTInteger, ogr.OFTInteger64)


def _polygon_reference(path, dataset, target, field_name) -> Reference:
    gdal = gdal_module()
    if target.geotransform is None:
        raise UserError("polygons can only be compared with a georeferenced map: the map has no CRS")
    layer = dataset.GetLayer(0)
    field_name, is_text = _choose_field(layer, field_name, path)
    notes = []
    if dataset.GetLayerCount() > 1:
        notes.append(f"{path} has {dataset.GetLayerCount()} layers: the first, {layer.GetName()!r}, is used")
    names: dict[int, str] | None = None
    if is_text:
        values: dict[str, int] = {}
        layer.ResetReading()
        for feature in layer:
            value = feature.GetField(field_name)
            if value is not None and str(value) not in values:
                values[str(value)] = len(values) + 1
        layer.ResetReading()
        names = {code: value for value, code in values.items()}
    folder = tempfile.mkdtemp(prefix="rs-ovseg-reference-")
    raster_path = str(Path(folder) / "reference.tif")
    try:
        out = gdal.GetDriverByName("GTiff").Create(
            raster_path,
            target.width,
            target.height,
            1,
            gdal.GDT_Int32,
            ["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER", "SPARSE_OK=TRUE"],
        )
        out.SetGeoTransform(tuple(target.geotransform))
        out.SetProjection(target.projection_wkt)
        band = out.GetRasterBand(1)
        band.SetNoDataValue(NO_REFERENCE)
        band.Fill(NO_REFERENCE)
        layer_name = layer.GetName()
        if names is None:
            gdal.Rasterize(out, dataset, layers=[layer_name], attribute=field_name, allTouched=False)
        else:
            quoted = field_name.replace('"', '""')
            for code, value in names.items():
                escaped = value.replace("'", "''")
                gdal.Rasterize(
                    out,
                    dataset,
                    layers=[layer_name],
                    burnValues=[code],
                    allTouched=False,
                    where=f"\"{quoted}\" = '{escaped}'",
                )
        band = out = None  # closed, then read back: the written dataset's cache served stale blocks
        out = gdal.Open(raster_path)
    except RuntimeError as exc:
        band = out = None
        shutil.rmtree(folder, ignore_errors=True)
        raise UserError(f"cannot rasterise the polygons of {path}: {exc}") from None
    band = out.GetRasterBand(1)
    return Reference(
        path,
        "polygons",
        "rasterised",
        names,
        field_name,
        out,
        band,
        (0, 0),
        float(NO_REFERENCE),
        _temporary=folder,
        notes=notes,
    )


@contextlib.contextmanager
def opened_reference(path: str, target: TargetGrid, map_size, field_name=None):
    reference = open_reference(path, target, map_size, field_name)
    try:
        yield reference
    finally:
        reference.close()
