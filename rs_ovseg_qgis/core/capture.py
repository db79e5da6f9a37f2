"""What the engine reads: a file-backed layer by path, or the map rendered into a temporary GeoTIFF.

Rendering touches live layers, so ``render_to_geotiff`` must run on the main thread; the rest is
geometry. Extents always travel with their CRS; the engine receives the extent in the raster's CRS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsMapLayer,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsUnitTypes,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage

from ..definitions import MAX_RENDER_SIDE_PX

# Metres per degree of latitude (mean Earth radius 6,371,008.8 m): converts a GSD in metres to degrees
# when the map is in a geographic CRS.
METRES_PER_DEGREE = 2 * math.pi * 6_371_008.8 / 360


class CaptureError(ValueError):
    """The chosen input or extent cannot be captured; the message says what to change."""


@dataclass
class CaptureResult:
    """The engine's input: ``path`` plus an optional window (``bbox`` in ``bbox_crs``) and GSD."""

    path: str
    bbox: tuple[float, float, float, float] | None
    bbox_crs: str | None  # authid ("EPSG:25832") or WKT when the CRS has no authority id
    gsd: float | None  # metres per pixel; None = the raster's own resolution
    rendered: bool  # True if the plugin rendered the GeoTIFF (temporary, delete when done)
    bands: list[int] | None = None  # 1-based bands the engine reads as RGB; None = its default


def crs_id(crs: QgsCoordinateReferenceSystem) -> str:
    return crs.authid() or crs.toWkt()


def file_source_path(layer: QgsMapLayer | None) -> str | None:
    """The file GDAL opens for this layer, or None (WMS, XYZ, in-memory, ...)."""
    if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        return None
    path = layer.source().split("|")[0]
    return path if Path(path).is_file() else None


def transform_extent(
    extent: QgsRectangle,
    source: QgsCoordinateReferenceSystem,
    target: QgsCoordinateReferenceSystem,
    project: QgsProject | None = None,
) -> QgsRectangle:
    """The bounding box, in ``target``, of ``extent`` given in ``source`` (edges densified, not corners)."""
    if not source.isValid() or not target.isValid() or source == target:
        return QgsRectangle(extent)
    context = (project or QgsProject.instance()).transformContext()
    try:
        return QgsCoordinateTransform(source, target, context).transformBoundingBox(extent)
    except QgsCsException as error:
        raise CaptureError(
            f"the extent cannot be expressed in {target.authid() or target.description()} "
            f"(from {source.authid() or source.description()}): choose an extent inside the layer's area"
        ) from error


def metres_to_map_units(gsd_m: float, crs: QgsCoordinateReferenceSystem, latitude: float = 0.0) -> float:
    """A ground distance in metres in the CRS's units (degrees: along the parallel at ``latitude``)."""
    units = crs.mapUnits()
    if units == QgsUnitTypes.DistanceDegrees:
        return gsd_m / (METRES_PER_DEGREE * max(math.cos(math.radians(latitude)), 1e-6))
    return gsd_m * QgsUnitTypes.fromUnitToUnitFactor(QgsUnitTypes.DistanceMeters, units)


def pixel_size(extent: QgsRectangle, step: float) -> tuple[int, int]:
    """Width and height in pixels of ``extent`` at ``step`` map units per pixel (rounded up)."""
    if step <= 0:
        raise CaptureError("the resolution must be a positive number of metres per pixel")
    return max(1, math.ceil(extent.width() / step - 1e-9)), max(1, math.ceil(extent.height() / step - 1e-9))


def native_gsd_m(layer: QgsRasterLayer) -> float | None:
    """The layer's pixel size in metres (x), or None if its CRS has no known unit."""
    step = layer.rasterUnitsPerPixelX()
    crs = layer.crs()
    if crs.mapUnits() == QgsUnitTypes.DistanceDegrees:
        return step * METRES_PER_DEGREE * math.cos(math.radians(layer.extent().center().y()))
    if crs.mapUnits() == QgsUnitTypes.DistanceUnknownUnit:
        return None
    return step * QgsUnitTypes.fromUnitToUnitFactor(crs.mapUnits(), QgsUnitTypes.DistanceMeters)


def capture_file_layer(
    layer: QgsRasterLayer,
    extent: QgsRectangle | None,
    extent_crs: QgsCoordinateReferenceSystem | None,
    gsd_m: float | None,
    project: QgsProject | None = None,
) -> CaptureResult:
    """A file-backed layer: its path and the extent clipped to it, in the layer's CRS."""
    path = file_source_path(layer)
    if path is None:
        raise CaptureError(f"layer {layer.name()!r} is not a file GDAL can open")
    bbox = None
    if extent is not None and not extent.isEmpty():
        window = transform_extent(extent, extent_crs or layer.crs(), layer.crs(), project)
        window = window.intersect(layer.extent())
        if window.isEmpty():
            raise CaptureError(f"the chosen extent does not overlap layer {layer.name()!r}")
        bbox = (window.xMinimum(), window.yMinimum(), window.xMaximum(), window.yMaximum())
    return CaptureResult(path, bbox, crs_id(layer.crs()) if bbox else None, gsd_m or None, rendered=False)


def render_settings(
    layers: list[QgsMapLayer],
    extent: QgsRectangle,
    crs: QgsCoordinateReferenceSystem,
    gsd_m: float,
    project: QgsProject | None = None,
) -> QgsMapSettings:
    """Map settings that draw ``extent`` (in ``crs``) at ``gsd_m`` metres per pixel, square pixels."""
    step = metres_to_map_units(gsd_m, crs, extent.center().y())
    width, height = pixel_size(extent, step)
    if max(width, height) > MAX_RENDER_SIDE_PX:
        raise CaptureError(
            f"rendering {width} x {height} px is too large (at most {MAX_RENDER_SIDE_PX} a side): "
            "choose a coarser resolution or a smaller extent"
        )
    # Grow the extent to whole pixels so that each pixel is exactly ``step`` wide and high.
    left, top = extent.xMinimum(), extent.yMaximum()
    snapped = QgsRectangle(left, top - height * step, left + width * step, top)
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(crs)
    settings.setOutputSize(QSize(width, height))
    settings.setExtent(snapped)
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    settings.setOutputImageFormat(QImage.Format.Format_ARGB32)
    settings.setTransformContext((project or QgsProject.instance()).transformContext())
    return settings


def render_to_geotiff(settings: QgsMapSettings, path: str | Path) -> Path:
    """Render on the calling (main) thread and write an RGBA GeoTIFF; alpha 0 marks no data."""
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage().convertToFormat(QImage.Format.Format_ARGB32)
    width, height = image.width(), image.height()
    pointer = image.constBits()
    pointer.setsize(image.sizeInBytes() if hasattr(image, "sizeInBytes") else image.byteCount())
    rows = np.frombuffer(pointer, np.uint8).reshape(height, image.bytesPerLine())
    # ARGB32 is stored as 32-bit words 0xAARRGGBB: little-endian bytes are B, G, R, A.
    bgra = rows[:, : width * 4].reshape(height, width, 4)
    extent = settings.visibleExtent()
    step = extent.width() / width
    path = Path(path)
    driver = gdal.GetDriverByName("GTiff")
    dataset = driver.Create(str(path), width, height, 4, gdal.GDT_Byte, ["COMPRESS=DEFLATE", "ALPHA=YES"])
    dataset.SetGeoTransform((extent.xMinimum(), step, 0.0, extent.yMaximum(), 0.0, -step))
    dataset.SetProjection(settings.destinationCrs().toWkt())
    for band, channel in enumerate((2, 1, 0, 3), start=1):
        dataset.GetRasterBand(band).WriteArray(np.ascontiguousarray(bgra[:, :, channel]))
    interpretations = (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand, gdal.GCI_AlphaBand)
    for band, interpretation in enumerate(interpretations, start=1):
        dataset.GetRasterBand(band).SetColorInterpretation(interpretation)
    dataset.FlushCache()
    dataset = None
    return path


def capture_rendered(
    layers: list[QgsMapLayer],
    extent: QgsRectangle,
    crs: QgsCoordinateReferenceSystem,
    gsd_m: float,
    path: str | Path,
    project: QgsProject | None = None,
) -> CaptureResult:
    """Render ``layers`` over ``extent`` (in ``crs``) into ``path``; the engine then reads all of it."""
    if not layers:
        raise CaptureError("nothing to render: the map shows no layers")
    if extent.isEmpty():
        raise CaptureError("the extent is empty: choose an extent first")
    settings = render_settings(layers, extent, crs, gsd_m, project)
    render_to_geotiff(settings, path)
    # The rendered pixels already have the wanted size: the engine must keep them one to one. The GSD is
    # passed explicitly because without one the engine would apply its default reduction again.
    return CaptureResult(str(path), None, None, gsd_m, rendered=True, bands=[1, 2, 3])
