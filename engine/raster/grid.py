"""Pixel grids: the requested output grid (the input's own grid, optionally cut to a bounding box) and
the working grid the model sees (same extent, pixel size = the working GSD).

The output grid keeps the input's placement (engine.raster.geometry): a geotransform shifted to the
window, or the GCPs/RPCs shifted to it, so the outputs lie exactly where the input lies.

Working grid (SegEarth-OV's resize, expressed as a ground resolution): the reference resizes every image
to fit 448×448, so a 1000×1000 OpenEarthMap tile at 0.5 m is seen at 1000/448 × 0.5 ≈ 1.116 m. Our
default working GSD is therefore native GSD × ``DEFAULT_GSD_FACTOR`` (1000/448), which reproduces the
reference's 1000² → 448² exactly on those tiles and keeps the same ground scale on rasters of any size.
The working size is the output size scaled by native/working GSD, rounded; the exact ratio
output/working pixels per axis then defines the resampling, like ``cv2.resize`` to that size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import UserError
from engine.raster.geometry import Geometry, edge_points, footprint_bounds, transformer_pixel_size

# Reference: 1000×1000 OpenEarthMap tiles are resized to 448×448 before the sliding window.
DEFAULT_GSD_FACTOR = 1000.0 / 448.0
# Allowed working GSD range relative to the native GSD (issue 3's contract).
MIN_GSD_FACTOR = 1.0 / 8.0
MAX_GSD_FACTOR = 64.0


@dataclass(frozen=True)
class PixelWindow:
    """A rectangle of source-raster pixels: columns [xoff, xoff+width), rows [yoff, yoff+height)."""

    xoff: int
    yoff: int
    width: int
    height: int


@dataclass(frozen=True)
class OutputGrid:
    """The requested grid: a window of the source raster, with its georeferencing.

    ``native_gsd`` is the source pixel size (x, y) in metres, or in pixels when the raster has no
    georeferencing (then ``georeferenced`` is False and GSDs are in source pixels).
    """

    window: PixelWindow
    geotransform: tuple[float, float, float, float, float, float] | None
    projection_wkt: str
    native_gsd: tuple[float, float]
    georeferenced: bool
    # How the outputs are placed: this window's geotransform, GCPs or RPCs (None: pixel space).
    placement: Geometry | None = None

    @property
    def geometry_label(self) -> str:
        """The placement as the sidecar names it: "geotransform", "gcps", "warped from rpc", "none", ..."""
        return self.placement.label if self.placement is not None else "none"

    @property
    def width(self) -> int:
        return self.window.width

    @property
    def height(self) -> int:
        return self.window.height

    @property
    def mean_native_gsd(self) -> float:
        return math.sqrt(self.native_gsd[0] * self.native_gsd[1])


@dataclass(frozen=True)
class WorkingGrid:
    """The model's grid over the output extent: ``width × height`` pixels of ``gsd`` metres.

    ``scale_x``/``scale_y`` = output pixels per working pixel (exact ratio of the sizes).
    """

    width: int
    height: int
    gsd: float
    scale_x: float
    scale_y: float


def _linear_unit_metres(srs) -> float:
    """Metres per CRS unit along the axes (degrees handled by the caller)."""
    return float(srs.GetLinearUnits() or 1.0)


def native_gsd(geotransform, projection_wkt: str, width: int, height: int) -> tuple[float, float]:
    """Source pixel size (x, y) in metres; geographic CRSs use the metres per degree at the centre."""
    from osgeo import osr

    gx = math.hypot(geotransform[1], geotransform[4])
    gy = math.hypot(geotransform[2], geotransform[5])
    srs = osr.SpatialReference()
    if projection_wkt:
        srs.ImportFromWkt(projection_wkt)
    if projection_wkt and srs.IsGeographic():
        centre_lat = geotransform[3] + geotransform[5] * height / 2 + geotransform[4] * width / 2
        metres_per_degree = 111_320.0
        return gx * metres_per_degree * math.cos(math.radians(centre_lat)), gy * 110_574.0
    unit = _linear_unit_metres(srs) if projection_wkt else 1.0
    return gx * unit, gy * unit


def _parse_bbox(bbox) -> tuple[float, float, float, float]:
    if isinstance(bbox, str):
        parts = bbox.replace(" ", "").split(",")
    else:
        parts = list(bbox)
    try:
        values = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise UserError(f"bad --bbox {bbox!r}: give four numbers minx,miny,maxx,maxy")
    minx, miny, maxx, maxy = values
    if minx >= maxx or miny >= maxy:
        raise UserError(f"bad --bbox {bbox!r}: minx must be < maxx and miny < maxy")
    return values  # type: ignore[return-value]


def spatial_reference(text: str):
    """``EPSG:xxxx``, WKT or PROJ string → osr.SpatialReference with x/y (lon/lat) axis order."""
    from osgeo import osr

    srs = osr.SpatialReference()
    try:
        if srs.SetFromUserInput(str(text)) != 0:
            raise RuntimeError
    except RuntimeError:
        raise UserError(f"unknown CRS {text!r}: use e.g. EPSG:4326, EPSG:25832 or a WKT string") from None
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _reprojected(points: list, bbox_crs: str | None, raster_wkt: str, bbox_text: str) -> list:
    """``points`` of a bbox given in ``bbox_crs`` (None: already in the raster's CRS) in the raster's CRS."""
    from osgeo import osr

    if not bbox_crs:
        return points
    source_srs = spatial_reference(bbox_crs)
    if not raster_wkt:
        raise UserError("--bbox-crs was given but the raster has no CRS: give the bbox in pixel units")
    raster_srs = spatial_reference(raster_wkt)
    if source_srs.IsSame(raster_srs):
        return points
    transform = osr.CoordinateTransformation(source_srs, raster_srs)
    moved = []
    for x, y in points:
        try:
            px, py, *_ = transform.TransformPoint(x, y)
        except RuntimeError:
            continue
        if math.isfinite(px) and math.isfinite(py):
            moved.append((px, py))
    if not moved:
        raise UserError(f"--bbox cannot be transformed from {bbox_crs} into the raster's CRS")
    return moved


def _covering_window(cols, rows, raster_size, bbox_text: str) -> tuple[PixelWindow, bool]:
    """The whole-pixel window covering fractional pixel positions, cut to the raster; (window, cut)."""
    x0, x1 = math.floor(min(cols) + 1e-6), math.ceil(max(cols) - 1e-6)
    y0, y1 = math.floor(min(rows) + 1e-6), math.ceil(max(rows) - 1e-6)
    width, height = raster_size
    cx0, cx1, cy0, cy1 = max(x0, 0), min(x1, width), max(y0, 0), min(y1, height)
    if cx0 >= cx1 or cy0 >= cy1:
        raise UserError(
            f"--bbox {bbox_text} does not overlap the raster "
            f"(pixel window {x0},{y0} to {x1},{y1} lies outside 0,0 to {width},{height})"
        )
    clipped = (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1)
    return PixelWindow(cx0, cy0, cx1 - cx0, cy1 - cy0), clipped


def window_from_bbox(
    geotransform, projection_wkt: str, raster_size: tuple[int, int], bbox, bbox_crs: str | None
) -> tuple[PixelWindow, bool]:
    """The smallest pixel window of the raster covering ``bbox``; (window, clipped-to-raster flag).

    The bbox is densified along its edges before reprojection so curved edges are covered.
    """
    from osgeo import gdal

    minx, miny, maxx, maxy = _parse_bbox(bbox)
    points = []
    steps = 20
    for i in range(steps + 1):
        t = i / steps
        points += [(minx + t * (maxx - minx), miny), (minx + t * (maxx - minx), maxy)]
        points += [(minx, miny + t * (maxy - miny)), (maxx, miny + t * (maxy - miny))]
    points = _reprojected(points, bbox_crs, projection_wkt, f"{minx},{miny},{maxx},{maxy}")
    inverse = gdal.InvGeoTransform(tuple(geotransform))
    cols, rows = [], []
    for x, y in points:
        cols.append(inverse[0] + inverse[1] * x + inverse[2] * y)
        rows.append(inverse[3] + inverse[4] * x + inverse[5] * y)
    return _covering_window(cols, rows, raster_size, f"{minx},{miny},{maxx},{maxy}")


def window_from_bbox_by_transformer(
    geometry: Geometry, raster_size: tuple[int, int], bbox, bbox_crs: str | None
) -> tuple[PixelWindow, bool]:
    """Like ``window_from_bbox`` for a GCP or RPC raster: the bbox (a grid of points over it, edges
    included) goes into the GCPs' CRS (RPCs: WGS 84) and through GDAL's transformer back to pixels.

    The flag is set only when the bbox reaches past the raster's footprint as QGIS draws it (its
    bounding box in the GCPs' CRS): a box drawn around a rotated scene maps past its pixel edges anyway.
    """
    minx, miny, maxx, maxy = _parse_bbox(bbox)
    text = f"{minx},{miny},{maxx},{maxy}"
    points = _reprojected(edge_points(minx, miny, maxx, maxy), bbox_crs, geometry.crs_wkt, text)
    pixels = [p for p in geometry.transformer(*raster_size).to_pixels(points) if p is not None]
    if not pixels:
        raise UserError(f"--bbox {text} cannot be mapped onto the raster through its {geometry.kind}")
    window, cut = _covering_window([p[0] for p in pixels], [p[1] for p in pixels], raster_size, text)
    if cut:
        fx0, fy0, fx1, fy1 = footprint_bounds(geometry, *raster_size)
        slack = max(fx1 - fx0, fy1 - fy0) / max(raster_size)  # about one pixel
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        cut = min(xs) < fx0 - slack or max(xs) > fx1 + slack or min(ys) < fy0 - slack or max(ys) > fy1 + slack
    return window, cut


def output_grid(
    geotransform,
    projection_wkt: str,
    georeferenced: bool,
    raster_size: tuple[int, int],
    window: PixelWindow,
    warped_from: str | None = None,
) -> OutputGrid:
    """The output grid of ``window``: the source's geotransform shifted to the window's corner."""
    if not georeferenced:
        return OutputGrid(window, None, "", (1.0, 1.0), False)
    gt = tuple(geotransform)
    placement = Geometry("geotransform", projection_wkt, gt, warped_from=warped_from)
    placement = placement.shifted(window.xoff, window.yoff)
    gsd = native_gsd(gt, projection_wkt, *raster_size)
    return OutputGrid(window, placement.geotransform, projection_wkt, gsd, True, placement)


def transformer_output_grid(
    geometry: Geometry, raster_size: tuple[int, int], window: PixelWindow
) -> OutputGrid:
    """The output grid of ``window`` of a GCP or RPC raster: the same pixels, the GCPs/RPCs shifted to
    the window's corner (so GDAL places every output pixel where it places the input's), the pixel size
    measured through the transformer."""
    gsd = transformer_pixel_size(geometry, *raster_size)
    placement = geometry.shifted(window.xoff, window.yoff)
    return OutputGrid(window, None, geometry.crs_wkt, gsd, True, placement)


def requested_grid(
    geometry: Geometry, raster_size: tuple[int, int], bbox, bbox_crs: str | None
) -> tuple[OutputGrid, list[str]]:
    """The output grid for a raster placed by ``geometry`` and an optional bbox; and warnings.

    Without georeferencing the bbox is in pixels; with a geotransform, in its CRS; with GCPs, in theirs;
    with RPCs, in WGS 84 lon/lat; ``bbox_crs`` names another CRS.
    """
    warnings: list[str] = []
    window = PixelWindow(0, 0, *raster_size)
    if bbox is not None:
        if not geometry.georeferenced and bbox_crs:
            raise UserError("--bbox-crs needs a georeferenced raster; without one give --bbox in pixels")
        if geometry.by_transformer:
            window, clipped = window_from_bbox_by_transformer(geometry, raster_size, bbox, bbox_crs)
        else:
            gt = geometry.geotransform or (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
            window, clipped = window_from_bbox(gt, geometry.crs_wkt, raster_size, bbox, bbox_crs)
        if clipped:
            warnings.append("--bbox extends beyond the raster: it was cut to the raster's extent")
    if geometry.by_transformer:
        return transformer_output_grid(geometry, raster_size, window), warnings
    grid = output_grid(
        geometry.geotransform,
        geometry.crs_wkt,
        geometry.georeferenced,
        raster_size,
        window,
        geometry.warped_from,
    )
    return grid, warnings


def working_grid(
    grid: OutputGrid,
    gsd: float | None = None,
    factor: float = DEFAULT_GSD_FACTOR,
    fit_edge: int | None = None,
) -> WorkingGrid:
    """Working grid over ``grid``'s extent at ``gsd`` metres. Default: native × ``factor`` (the method's
    rule), or with ``fit_edge`` the extent resized to fit inside ``fit_edge`` pixels a side (keeping
    its aspect, as SegEarth-OV's reference resizes each image)."""
    native = grid.mean_native_gsd
    unit = "m" if grid.georeferenced else "source pixels"
    if gsd is None and fit_edge:
        gsd = native * max(grid.width, grid.height) / float(fit_edge)
    elif gsd is None:
        gsd = native * factor
    elif not (isinstance(gsd, (int, float)) and math.isfinite(gsd) and gsd > 0):
        raise UserError(f"bad --gsd {gsd!r}: give a positive ground resolution in metres per pixel")
    ratio = gsd / native
    if ratio < MIN_GSD_FACTOR * (1 - 1e-9) or ratio > MAX_GSD_FACTOR * (1 + 1e-9):
        raise UserError(
            f"--gsd {gsd:g} {unit} is outside the allowed range {native * MIN_GSD_FACTOR:g} to "
            f"{native * MAX_GSD_FACTOR:g} {unit} (1/8 to 64 times the raster's {native:g} {unit} pixels)"
        )
    width = max(1, round(grid.width * grid.native_gsd[0] / gsd))
    height = max(1, round(grid.height * grid.native_gsd[1] / gsd))
    return WorkingGrid(width, height, float(gsd), grid.width / width, grid.height / height)
