"""The engine's estimate of a run's work (pixels, windows) before it starts, for the dock's size line.

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

# Engine options that change the plan; the others (model, templates, ...) do not matter to it.
PLAN_OPTIONS = ("batch_size", "tile_size")
# The rendered GeoTIFF's bands: red, green, blue, alpha; the engine reads the first three.
RENDERED_BANDS = 4


def estimate_args(
    capture: CaptureResult, options: dict | None = None, classes: list[str] | None = None
) -> dict:
    """The ``estimate`` request's arguments for what a run would read (same names as ``segment``).
    ``classes`` (one "name,synonym,…" string per class): the engine then also counts the windows a wide
    raster makes it evaluate twice, which depends on how many queries each window's logits hold."""
    args: dict = {"input": capture.path}
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


def format_estimate(result: dict) -> str:
    """One line: output pixels, the model's working grid, and the sliding windows it will run."""
    out_w, out_h = result["output_size"]
    work_w, work_h = result["working_size"]
    tiles = result.get("tiles", 1)
    text = (
        f"engine: {out_w:,} × {out_h:,} px out, {work_w:,} × {work_h:,} px seen by the model, "
        f"{result['crop_evaluations']:,} windows in {tiles:,} tile{'s' if tiles != 1 else ''}"
    )
    warnings = result.get("warnings") or []
    return text + "".join(f"\n⚠ {warning}" for warning in warnings)


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
