"""The engine's estimate of a run before it starts (output, model grid, windows, expected time), and
the panel's plain-words lines for it.

The worker's ``estimate`` request plans a run exactly as ``segment`` would (same grids, tiles and
sliding windows) without loading a model or writing anything. A file-backed layer is estimated from
its own file; what would be rendered first (the map view, WMS/XYZ layers) is stood in for by a
sourceless GDAL VRT with the rendered grid's size, georeferencing and bands: the plan only needs the
grid, and writing the VRT costs nothing, unlike rendering the map.
"""

from __future__ import annotations

import threading
from pathlib import Path

from osgeo import gdal
from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle
from qgis.PyQt.QtCore import QObject, pyqtSignal

from .capture import CaptureResult, metres_to_map_units, pixel_size
from .engine_client import EngineClient, EngineError

# Engine options that change the plan, or the speed a window runs at (engine.pipeline.run_time); the
# others (templates, attention, ...) matter to neither. A trained AerOSeg's model file and its window
# options set the window geometry.
PLAN_OPTIONS = ("batch_size", "tile_size", "dtype", "clip", "sam", "model", "crop_stride", "global_view")
# The rendered GeoTIFF's bands: red, green, blue, alpha; the engine reads the first three.
RENDERED_BANDS = 4


def estimate_args(
    capture: CaptureResult,
    options: dict | None = None,
    classes: list[str] | None = None,
    method: str | None = None,
    device: str | None = None,
) -> dict:
    """The ``estimate`` request's arguments for what a run would read (same names as ``segment``).
    ``classes`` (one "name,synonym,…" string per class): the engine then also counts the windows a wide
    raster makes it evaluate twice, which depends on how many queries each window's logits hold.
    ``method`` sets the window geometry; ``method``, ``device`` and the options the speed per window."""
    args: dict = {"input": capture.path}
    if method:
        args["method"] = method
    if device:
        args["device"] = device
    if classes:
        args["classes"] = list(classes)
    if capture.bbox is not None:
        args["bbox"] = list(capture.bbox)
        args["bbox_crs"] = capture.bbox_crs
    if capture.gsd:
        args["gsd"] = capture.gsd
    if capture.bands:
        args["bands"] = list(capture.bands)
    for name in PLAN_OPTIONS:
        if (options or {}).get(name) is not None:
            args[name] = options[name]
    return args


def rendered_grid_stand_in(
    extent: QgsRectangle, crs: QgsCoordinateReferenceSystem, gsd_m: float, path: str | Path
) -> CaptureResult:
    """A sourceless VRT with the grid ``capture_rendered`` would write for ``extent`` at ``gsd_m``.

    Same size (whole pixels of ``gsd_m`` metres), origin, CRS, bands and GSD; its pixels read as 0.
    """
    step = metres_to_map_units(gsd_m, crs, extent.center().y())
    width, height = pixel_size(extent, step)
    dataset = gdal.GetDriverByName("VRT").Create(str(path), width, height, RENDERED_BANDS, gdal.GDT_Byte)
    dataset.SetGeoTransform((extent.xMinimum(), step, 0.0, extent.yMaximum(), 0.0, -step))
    dataset.SetProjection(crs.toWkt())
    dataset.FlushCache()
    dataset = None
    return CaptureResult(str(path), None, None, gsd_m, rendered=True, bands=[1, 2, 3])


DEVICE_NAMES = {"cpu": "CPU", "cuda": "GPU (CUDA)", "mps": "Apple GPU"}


def length_text(metres: float) -> str:
    """A ground length for the panel: 850 m, 1.2 km, 12 km."""
    if metres < 1000:
        return f"{metres:,.0f} m"
    return f"{metres / 1000:,.1f} km" if metres < 10_000 else f"{metres / 1000:,.0f} km"


def area_text(square_metres: float) -> str:
    """An area for the panel: hectares below a square kilometre, else km²."""
    if square_metres < 1e6:
        return f"{square_metres / 1e4:,.1f} ha"
    return f"{square_metres / 1e6:,.2f} km²"


def ground_text(width_m: float, height_m: float) -> str:
    """The ground an extent covers: "500 m × 500 m (25.0 ha)"."""
    return f"{length_text(width_m)} × {length_text(height_m)} ({area_text(width_m * height_m)})"


def duration_text(seconds: float) -> str:
    """A run's duration, rounded as an estimate deserves: 4 s, 40 s, 3 min, 1 h 20 min."""
    if seconds < 10:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90:
        return f"{round(seconds, -1):.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(round(seconds / 600) * 10, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def output_text(result: dict) -> str:
    """What the output raster will be: its pixels, their ground size and the ground it covers."""
    out_w, out_h = result["output_size"]
    if not result.get("georeferenced", True):
        return f"{out_w:,} × {out_h:,} px (the input has no georeferencing)"
    gsd_x, gsd_y = result["native_gsd"]
    gsd = (gsd_x * gsd_y) ** 0.5
    return f"{out_w:,} × {out_h:,} px at {gsd:.3g} m/px, {ground_text(out_w * gsd_x, out_h * gsd_y)}"


def model_text(result: dict) -> str:
    """What the model looks at (at the resolution the panel shows): its grid and the windows it runs."""
    work_w, work_h = result["working_size"]
    windows = result["crop_evaluations"]
    tiles = result.get("tiles", 1)
    text = f"{work_w:,} × {work_h:,} px, {windows:,} window{'s' if windows != 1 else ''} of the model"
    return text + (f" in {tiles:,} tiles" if tiles > 1 else "")


def time_text(result: dict) -> str:
    """The expected duration, the share of loading the model (first run after QGIS starts) and where
    the speed behind it comes from (engine.pipeline.run_time)."""
    time = result.get("time")
    if not time:
        return "not known yet: the first run here measures it"
    device = DEVICE_NAMES.get(time.get("device"), str(time.get("device")))
    setup = time.get("setup_seconds") or 0.0
    loading = f", {duration_text(setup)} of it loading the model" if setup >= 1 else ""
    if time.get("basis") == "measured":
        return f"about {duration_text(time['seconds'])} on the {device}{loading} (speed measured here)"
    return f"roughly {duration_text(time['seconds'])} on the {device}{loading} (benchmark speed scaled to it)"


def estimate_warnings(result: dict) -> str:
    return "".join(f"\n⚠ {warning}" for warning in result.get("warnings") or [])


class EstimateJob(QObject):
    """Sends one ``estimate`` request on a background thread; ``done`` fires on the main thread.

    Not a QgsTask: QGIS 3.22 cannot hide a task, and every estimate (one per change of the extent or
    resolution) would then end with a "Task complete" message. The client is resolved on the main
    thread and handed in: the thread touches no settings or layers. ``result`` or ``error`` afterwards.
    """

    done = pyqtSignal()

    def __init__(self, client: EngineClient, args: dict, parent: QObject | None = None):
        super().__init__(parent)
        self.client = client
        self.args = args
        self.result: dict | None = None
        self.error = ""
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rs_ovseg_estimate")

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancelled.set()

    def wait(self, timeout_s: float) -> bool:
        """Wait for the thread to end (after ``cancel``); True if it has."""
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self.result = self.client.request("estimate", self.args, is_cancelled=self._cancelled.is_set)
        except EngineError as error:
            self.error = str(error)
        except OSError as error:  # the worker could not be started at all
            self.error = f"the engine could not start: {error}"
        if not self._cancelled.is_set():  # after cancel the receiver may be gone
            self.done.emit()  # queued to the main thread: this object lives there
