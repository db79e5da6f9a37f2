"""How a raster sits on the ground: a geotransform, ground control points (GCPs) or RPCs, or nothing.

GDAL's own order decides which one counts (as in its warper, ``gdalwarp`` and QGIS): a geotransform
if there is one, else GCPs, else RPC metadata. Every mapping between pixels and ground coordinates of
GCP and RPC rasters goes through GDAL's transformer (``gdal.Transformer``, the GCP polynomial whose
order GDAL picks from the number of points, or the RPC model at the RPCs' mean height), the same one
QGIS uses to draw such a raster, so windows, pixel sizes and warped grids agree with what the user sees.

Pixel/line coordinates are GDAL's: (0, 0) is the top-left corner of the first pixel.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import NamedTuple

from engine.errors import UserError
from engine.raster.gdal_setup import gdal_module as _gdal

GEOTRANSFORM, GCPS, RPC, NONE = "geotransform", "gcps", "rpc", "none"
IDENTITY_GEOTRANSFORM = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
# GDAL's GCP polynomial needs at least three points (a first-order fit).
MIN_GCPS = 3
# RPC00B keys GDAL needs to build an RPC transformer.
RPC_KEYS = (
    "LINE_OFF",
    "SAMP_OFF",
    "LAT_OFF",
    "LONG_OFF",
    "HEIGHT_OFF",
    "LINE_SCALE",
    "SAMP_SCALE",
    "LAT_SCALE",
    "LONG_SCALE",
    "HEIGHT_SCALE",
    "LINE_NUM_COEFF",
    "LINE_DEN_COEFF",
    "SAMP_NUM_COEFF",
    "SAMP_DEN_COEFF",
)
# Resampling of the imagery onto a warped grid (the model's working grid is bilinear too).
WARP_RESAMPLING = "bilinear"
# Points per edge when a footprint or a box is traced through a transformer (curved edges are covered).
EDGE_STEPS = 20


class ControlPoint(NamedTuple):
    """One GCP: pixel/line in the raster, x/y/z in the GCPs' CRS (x = easting or longitude)."""

    pixel: float
    line: float
    x: float
    y: float
    z: float = 0.0
    id: str = ""
    info: str = ""


@dataclass(frozen=True)
class Geometry:
    """A raster's placement. ``crs_wkt`` is the geotransform's CRS, the GCPs' CRS, or WGS 84 for RPCs.

    ``warped_from`` names the placement a warped grid was computed from ("gcps", "rpc", ...).
    """

    kind: str
    crs_wkt: str = ""
    geotransform: tuple[float, float, float, float, float, float] | None = None
    gcps: tuple[ControlPoint, ...] = ()
    rpc: tuple[tuple[str, str], ...] = ()  # the RPC metadata domain as (key, value) pairs
    warped_from: str | None = None

    @property
    def georeferenced(self) -> bool:
        return self.kind != NONE

    @property
    def by_transformer(self) -> bool:
        """True for GCPs and RPCs: pixels map to the ground only through GDAL's transformer."""
        return self.kind in (GCPS, RPC)

    @property
    def label(self) -> str:
        """What the sidecar records: "geotransform", "gcps", "rpc", "none" or "warped from gcps"."""
        return f"warped from {self.warped_from}" if self.warped_from else self.kind

    def shifted(self, xoff: int, yoff: int) -> Geometry:
        """The placement of a window whose top-left pixel is (xoff, yoff) of this raster (exact)."""
        if self.kind == GEOTRANSFORM:
            gt = self.geotransform
            origin = (gt[0] + xoff * gt[1] + yoff * gt[2], gt[3] + xoff * gt[4] + yoff * gt[5])
            return replace(self, geotransform=(origin[0], gt[1], gt[2], origin[1], gt[4], gt[5]))
        if self.kind == GCPS:
            moved = tuple(p._replace(pixel=p.pixel - xoff, line=p.line - yoff) for p in self.gcps)
            return replace(self, gcps=moved)
        if self.kind == RPC:
            items = dict(self.rpc)
            items["SAMP_OFF"] = repr(_number(items["SAMP_OFF"]) - xoff)
            items["LINE_OFF"] = repr(_number(items["LINE_OFF"]) - yoff)
            return replace(self, rpc=tuple(items.items()))
        return self

    def apply_to(self, dataset) -> None:
        """Write this placement into a GDAL dataset being created (GTiff keeps GCPs and RPCs in tags)."""
        gdal = _gdal()
        if self.kind == GEOTRANSFORM:
            dataset.SetGeoTransform(self.geotransform)
            if self.crs_wkt:
                dataset.SetProjection(self.crs_wkt)
        elif self.kind == GCPS:
            points = [gdal.GCP(p.x, p.y, p.z, p.pixel, p.line, p.info, p.id) for p in self.gcps]
            dataset.SetGCPs(points, self.crs_wkt)
        elif self.kind == RPC:
            dataset.SetMetadata(dict(self.rpc), "RPC")

    def transformer(self, width: int, height: int):
        """``gdal.Transformer`` from pixel/line (forward) to ``crs_wkt`` coordinates, and back."""
        gdal = _gdal()
        carrier = gdal.GetDriverByName("MEM").Create("", max(1, width), max(1, height), 0)
        self.apply_to(carrier)
        try:
            transformer = gdal.Transformer(carrier, None, [])
        except RuntimeError as exc:
            raise UserError(f"GDAL cannot build a transformer from the raster's {self.kind}: {exc}") from None
        return _KeepAlive(transformer, carrier)


class _KeepAlive:
    """A transformer with the dataset it was built from (GDAL reads the GCPs through it)."""

    def __init__(self, transformer, dataset) -> None:
        self._transformer, self._dataset = transformer, dataset

    def to_ground(self, points: list[tuple[float, float]]) -> list[tuple[float, float] | None]:
        """Pixel/line → ground coordinates; None where GDAL cannot map a point."""
        return self._map(0, points)

    def to_pixels(self, points: list[tuple[float, float]]) -> list[tuple[float, float] | None]:
        """Ground coordinates → pixel/line; None where GDAL cannot map a point."""
        return self._map(1, points)

    def _map(self, inverse: int, points):
        if not points:
            return []
        mapped, ok = self._transformer.TransformPoints(inverse, [(float(x), float(y)) for x, y in points])
        return [
            (m[0], m[1]) if flag and math.isfinite(m[0]) and math.isfinite(m[1]) else None
            for m, flag in zip(mapped, ok)
        ]


def _number(text: str) -> float:
    return float(str(text).split()[0])


def _complete_rpc(metadata: dict | None) -> bool:
    return bool(metadata) and all(key in metadata for key in RPC_KEYS)


def read_geometry(dataset) -> Geometry:
    """The placement GDAL's transformer would use for ``dataset`` (geotransform, GCPs, RPC, or none)."""
    from osgeo import osr

    gt = dataset.GetGeoTransform(can_return_null=True)
    if gt is not None and tuple(gt) != IDENTITY_GEOTRANSFORM:
        return Geometry(GEOTRANSFORM, dataset.GetProjection() or "", tuple(gt))
    if dataset.GetGCPCount() >= MIN_GCPS:
        points = tuple(
            ControlPoint(g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY, g.GCPZ, g.Id or "", g.Info or "")
            for g in dataset.GetGCPs()
        )
        return Geometry(GCPS, dataset.GetGCPProjection() or "", gcps=points)
    metadata = dataset.GetMetadata("RPC")
    if _complete_rpc(metadata):
        wgs84 = osr.SpatialReference()
        wgs84.ImportFromEPSG(4326)
        return Geometry(RPC, wgs84.ExportToWkt(), rpc=tuple(sorted(metadata.items())))
    return Geometry(NONE)


def edge_points(x0: float, y0: float, x1: float, y1: float, steps: int = EDGE_STEPS) -> list:
    """Points along the four edges of the rectangle and a grid inside it (``steps`` per side)."""
    return [
        (x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * j / steps)
        for i in range(steps + 1)
        for j in range(steps + 1)
    ]


def footprint_bounds(geometry: Geometry, width: int, height: int) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) in ``geometry.crs_wkt`` of the raster traced through the transformer."""
    ground = [p for p in geometry.transformer(width, height).to_ground(edge_points(0, 0, width, height)) if p]
    if not ground:
        raise UserError(f"GDAL cannot place the raster on the ground from its {geometry.kind}")
    xs, ys = zip(*ground)
    return min(xs), min(ys), max(xs), max(ys)


def _metres_between(a, b, geographic: bool, unit: float) -> float:
    if not geographic:
        return math.hypot(b[0] - a[0], b[1] - a[1]) * unit
    # Metres per degree on the WGS 84 ellipsoid at the mean latitude (series good to centimetres).
    phi = math.radians((a[1] + b[1]) / 2)
    per_degree_lat = 111_132.92 - 559.82 * math.cos(2 * phi) + 1.175 * math.cos(4 * phi)
    per_degree_lon = 111_412.84 * math.cos(phi) - 93.5 * math.cos(3 * phi)
    return math.hypot((b[0] - a[0]) * per_degree_lon, (b[1] - a[1]) * per_degree_lat)


def transformer_pixel_size(geometry: Geometry, width: int, height: int) -> tuple[float, float]:
    """Mean pixel size (x, y) in metres along the centre row and column, mapped by the transformer.

    CRSs without a known unit count their units as metres.
    """
    from osgeo import osr

    srs = osr.SpatialReference()
    geographic, unit = False, 1.0
    if geometry.crs_wkt:
        srs.ImportFromWkt(geometry.crs_wkt)
        geographic = bool(srs.IsGeographic())
        unit = float(srs.GetLinearUnits() or 1.0)
    transformer = geometry.transformer(width, height)
    sizes = []
    for along_x in (True, False):
        span = width if along_x else height
        steps = [i * span / EDGE_STEPS for i in range(EDGE_STEPS + 1)]
        line = [(s, height / 2) if along_x else (width / 2, s) for s in steps]
        ground = transformer.to_ground(line)
        pairs = [(a, b) for a, b in itertools.pairwise(ground) if a and b]
        if not pairs:
            raise UserError(f"GDAL cannot measure the raster's pixel size from its {geometry.kind}")
        metres = sum(_metres_between(a, b, geographic, unit) for a, b in pairs)
        sizes.append(metres / (len(pairs) * span / EDGE_STEPS))
    return sizes[0], sizes[1]


def utm_zone_wkt(longitude: float, latitude: float) -> str:
    """WKT of the WGS 84 / UTM zone holding a point (EPSG:326zz north, 327zz south)."""
    from osgeo import osr

    zone = min(60, max(1, math.floor((longitude + 180.0) / 6.0) + 1))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG((32600 if latitude >= 0 else 32700) + zone)
    return srs.ExportToWkt()


def warp_target_wkt(geometry: Geometry, width: int, height: int, path: str) -> str | None:
    """The CRS of the north-up grid ``--warp`` resamples to; None when the raster already is north-up.

    GCPs: their own CRS. RPCs: the WGS 84 / UTM zone of the scene centre (square metre pixels, where
    the RPCs' own lon/lat would stretch pixels by latitude). A rotated geotransform: its own CRS.
    """
    if geometry.kind == NONE:
        raise UserError(f"--warp needs georeferencing: {path} has no geotransform, GCPs or RPCs")
    if geometry.kind == GEOTRANSFORM:
        gt = geometry.geotransform
        return geometry.crs_wkt if (gt[2], gt[4]) != (0.0, 0.0) or gt[5] > 0 else None
    if geometry.kind == GCPS:
        if not geometry.crs_wkt:
            raise UserError(f"--warp needs the CRS of the GCPs: {path} has GCPs without a CRS")
        return geometry.crs_wkt
    centre = geometry.transformer(width, height).to_ground([(width / 2, height / 2)])[0]
    if centre is None:
        raise UserError(f"GDAL cannot place the centre of {path} on the ground from its RPCs")
    return utm_zone_wkt(*centre)


def warped_dataset(dataset, geometry: Geometry, path: str):
    """A lazy warped VRT of ``dataset`` on a north-up grid (GDAL's suggested size and pixel size, an
    alpha band marking where the source has no pixels), and its geometry; (dataset, geometry)
    unchanged when no warp is needed. The VRT reads through ``dataset``: keep that open."""
    gdal = _gdal()
    target = warp_target_wkt(geometry, dataset.RasterXSize, dataset.RasterYSize, path)
    if target is None:
        return dataset, geometry
    try:
        warped = gdal.Warp(
            "", dataset, format="VRT", dstSRS=target, dstAlpha=True, resampleAlg=WARP_RESAMPLING
        )
    except RuntimeError as exc:
        raise UserError(f"GDAL cannot warp {path} from its {geometry.kind}: {exc}") from None
    placed = Geometry(
        GEOTRANSFORM,
        warped.GetProjection() or target,
        tuple(warped.GetGeoTransform()),
        warped_from=geometry.kind,
    )
    return warped, placed
