"""Imagery and labels for training, on one grid per image.

Labels come from a class raster (values 1..K = the K classes in order, 0 = unlabelled, 255 = ignore),
warped onto the image grid with nearest neighbour, or from polygons rasterised onto it with
``gdal.Rasterize`` (which reprojects a layer in another CRS). A polygon's class is its ``label_field``
value: a class name or synonym (any case), or a number 1..K. Images are read as RGB uint8, resampled to
``gsd`` metres per pixel first when asked.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.raster.gdal_setup import gdal_module

log = logging.getLogger(__name__)

UNLABELLED = 0
IGNORE = 255
VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".kml", ".gml", ".fgb", ".sqlite")


@dataclass
class LabelledImage:
    """One image and its labels on the same grid: rgb (3, H, W) uint8, labels (H, W) uint8."""

    path: str
    rgb: np.ndarray
    labels: np.ndarray
    geotransform: tuple
    projection: str
    fingerprint: dict = field(default_factory=dict)

    @property
    def labelled(self) -> int:
        return int(((self.labels != UNLABELLED) & (self.labels != IGNORE)).sum())


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _to_uint8(band: np.ndarray) -> np.ndarray:
    """A band of any type → uint8: as is for Byte, else a 2–98 % percentile stretch."""
    if band.dtype == np.uint8:
        return band
    valid = band[np.isfinite(band)] if band.dtype.kind == "f" else band.ravel()
    low, high = np.percentile(valid, (2, 98)) if valid.size else (0.0, 1.0)
    scaled = (band.astype(np.float64) - low) / max(high - low, 1e-12)
    return (np.clip(np.nan_to_num(scaled), 0, 1) * 255).round().astype(np.uint8)


def open_image(path: str, gsd: float | None = None):
    """The GDAL dataset of ``path``, resampled (average) to ``gsd`` metres per pixel when given."""
    gdal = gdal_module()
    if not Path(path).is_file():
        raise UserError(f"image not found: {path}")
    try:
        dataset = gdal.Open(str(path))
    except RuntimeError as error:
        raise UserError(f"GDAL cannot read image {path}: {error}") from None
    if not dataset.GetProjection() or dataset.GetGeoTransform(can_return_null=True) is None:
        raise UserError(f"{path} has no georeferencing (CRS and geotransform): labels cannot be placed on it")
    if gsd:
        if gsd <= 0:
            raise UserError(f"--gsd must be a positive number of metres per pixel, got {gsd}")
        dataset = gdal.Warp("", dataset, format="MEM", xRes=gsd, yRes=gsd, resampleAlg="average")
    return dataset


def read_rgb(dataset) -> np.ndarray:
    """(3, H, W) uint8: bands 1-3 (one band repeated for a single-band image)."""
    count = dataset.RasterCount
    bands = [1, 2, 3] if count >= 3 else [1, 1, 1]
    return np.stack([_to_uint8(dataset.GetRasterBand(b).ReadAsArray()) for b in bands])


def _empty_like(dataset):
    gdal = gdal_module()
    target = gdal.GetDriverByName("MEM").Create(
        "", dataset.RasterXSize, dataset.RasterYSize, 1, gdal.GDT_Byte
    )
    target.SetGeoTransform(dataset.GetGeoTransform())
    target.SetProjection(dataset.GetProjection())
    return target


def raster_labels(path: str, dataset, classes: int) -> np.ndarray:
    """A class raster warped onto ``dataset``'s grid (nearest); values above K other than 255 refused."""
    gdal = gdal_module()
    try:
        source = gdal.Open(str(path))
    except RuntimeError as error:
        raise UserError(f"GDAL cannot read the label raster {path}: {error}") from None
    target = _empty_like(dataset)
    target.GetRasterBand(1).Fill(UNLABELLED)
    nodata = source.GetRasterBand(1).GetNoDataValue()
    gdal.Warp(target, source, resampleAlg="near", srcNodata=nodata, dstNodata=None)
    labels = target.GetRasterBand(1).ReadAsArray()
    bad = np.unique(labels[(labels > classes) & (labels != IGNORE)])
    if bad.size:
        raise UserError(
            f"the label raster {path} has values {', '.join(map(str, bad[:8]))}: use 1..{classes} for the "
            f"{classes} classes in the order given, 0 for unlabelled and 255 to ignore"
        )
    return labels


def class_lookup(classes: list[list[str]]) -> dict[str, int]:
    """Field value (lower case) → class number 1..K, from names, synonyms and the numbers themselves."""
    lookup = {}
    for number, names in enumerate(classes, start=1):
        lookup[str(number)] = number
        for name in names:
            lookup[name.strip().lower()] = number
    return lookup


def polygon_labels(path: str, field_name: str, dataset, classes: list[list[str]], layer: str | None = None):
    """(labels (H, W), {unmatched field value: polygon count}) from polygons burnt onto the grid."""
    gdal = gdal_module()
    from osgeo import ogr

    ogr.UseExceptions()
    try:
        source = ogr.Open(str(path))
    except RuntimeError as error:
        raise UserError(f"cannot read the polygon file {path}: {error}") from None
    vector = source.GetLayerByName(layer) if layer else source.GetLayer(0)
    if vector is None:
        raise UserError(f"{path} has no layer {layer!r}" if layer else f"{path} has no layer")
    definition = vector.GetLayerDefn()
    names = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]
    if field_name not in names:
        raise UserError(f"{path} has no field {field_name!r}; its fields: {', '.join(names) or 'none'}")
    # A memory copy with the class number as an integer field: no SQL built from user data.
    memory = gdal.GetDriverByName("Memory").Create("labels", 0, 0, 0, gdal.GDT_Unknown)
    copy = memory.CreateLayer("labels", vector.GetSpatialRef(), ogr.wkbUnknown)
    copy.CreateField(ogr.FieldDefn("aeroseg_class", ogr.OFTInteger))
    lookup = class_lookup(classes)
    unmatched: dict[str, int] = {}
    for feature in vector:
        value = feature.GetField(field_name)
        key = str(value).strip().lower() if value is not None else ""
        if key.endswith(".0") and key[:-2].isdigit():
            key = key[:-2]
        number = lookup.get(key)
        geometry = feature.GetGeometryRef()
        if number is None or geometry is None:
            unmatched[str(value)] = unmatched.get(str(value), 0) + 1
            continue
        out = ogr.Feature(copy.GetLayerDefn())
        out.SetGeometry(geometry.Clone())
        out.SetField("aeroseg_class", number)
        copy.CreateFeature(out)
    if unmatched:
        log.warning("polygons whose %s matches no class were skipped: %s", field_name, unmatched)
    if vector.GetSpatialRef() is None:
        raise UserError(f"{path} has no CRS: the polygons cannot be placed on the imagery")
    target = _empty_like(dataset)
    target.GetRasterBand(1).Fill(UNLABELLED)
    gdal.Rasterize(target, memory, layers=["labels"], attribute="aeroseg_class")
    return target.GetRasterBand(1).ReadAsArray(), unmatched


def is_vector(path: str) -> bool:
    return Path(path).suffix.lower() in VECTOR_SUFFIXES


def load_labelled_images(
    images: list[str],
    labels: str,
    classes: list[list[str]],
    *,
    label_field: str | None = None,
    gsd: float | None = None,
) -> tuple[list[LabelledImage], dict]:
    """Every image with its labels; (images, report with unmatched polygon values)."""
    if not images:
        raise UserError("no image given: --images A.tif [B.tif ...]")
    if not Path(labels).exists():
        raise UserError(f"labels not found: {labels}")
    vector = is_vector(labels)
    if vector and not label_field:
        raise UserError("polygon labels need --label-field: the attribute holding each polygon's class")
    result, report = [], {"unmatched_values": {}}
    for path in images:
        dataset = open_image(path, gsd)
        rgb = read_rgb(dataset)
        if vector:
            label_array, unmatched = polygon_labels(labels, label_field, dataset, classes)
            for key, count in unmatched.items():
                report["unmatched_values"][key] = report["unmatched_values"].get(key, 0) + count
        else:
            label_array = raster_labels(labels, dataset, len(classes))
        fingerprint = {
            "image": str(Path(path).resolve()),
            "size": [int(dataset.RasterXSize), int(dataset.RasterYSize)],
            "gsd": gsd,
            "pixels_sha256": _digest(rgb),
            "labels_sha256": _digest(label_array),
        }
        result.append(
            LabelledImage(
                str(path), rgb, label_array, dataset.GetGeoTransform(), dataset.GetProjection(), fingerprint
            )
        )
    check_labels(result, classes, labels)
    return result, report


def check_labels(images: list[LabelledImage], classes: list[list[str]], labels: str) -> None:
    """Refuse labels that cover no pixel, and classes without a labelled pixel (named)."""
    if sum(image.labelled for image in images) == 0:
        raise UserError(
            f"no labelled pixel: the labels in {labels} do not overlap the imagery (check that they cover "
            "the images and that their class values match --classes)"
        )
    counts = np.zeros(len(classes) + 1, dtype=np.int64)
    for image in images:
        counts += np.bincount(image.labels[image.labels != IGNORE].ravel(), minlength=256)[: len(classes) + 1]
    missing = [",".join(names) for names, count in zip(classes, counts[1:]) if count == 0]
    if missing:
        raise UserError(
            f"no labelled pixel for class(es) {'; '.join(missing)}: draw polygons for them on the imagery, "
            "or leave them out of --classes (an unseen class may be given with --unseen)"
        )
