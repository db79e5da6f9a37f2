"""The dock's estimate, in plain words: the output raster (pixels, pixel size, ground covered), what the
model looks at (its grid and windows at the chosen resolution) and the expected time on this device.

A mixin of ``RsOvsegDock`` (it reads the dock's widgets and fills ``size_label`` = the output,
``model_label`` and ``time_label``). The panel's own arithmetic shows at once; the engine's estimate,
asked on a plain thread, debounced and dropped when the choices changed meanwhile, follows. Never renders
anything: for input that a run would render, a VRT with the same grid stands in.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from qgis.core import QgsRasterLayer, QgsRectangle
from qgis.gui import QgsExtentWidget

from ..core import engine_service
from ..core.capture import (
    CaptureError,
    capture_file_layer,
    file_source_path,
    metres_to_map_units,
    pixel_size,
    transform_extent,
)
from ..core.estimate import (
    EstimateJob,
    estimate_args,
    estimate_warnings,
    ground_text,
    model_text,
    output_text,
    rendered_grid_stand_in,
    time_text,
)
from ..core.settings import engine_python
from ..core.vocabulary import VocabularyError
from ..definitions import SOURCE_LAYER
from .extent_outline import ExtentOutline

TIME_TOOLTIP = (
    "Windows to evaluate × this computer's seconds per window: measured by the last runs here with the "
    "same method, device and models, else the benchmark machine's speed scaled to this device's measured "
    "matrix speed. The first run after QGIS starts also loads the model (seconds to a minute)."
)


class WorkEstimate:
    extent_outline: ExtentOutline | None = None

    # --- the extent on the map -------------------------------------------------------------------
    def attach_extent_outline(self, canvas) -> None:
        """Outline the chosen extent on ``canvas`` while the panel is shown (not while it follows the
        map view: the view's own border is that outline)."""
        self.extent_outline = ExtentOutline(canvas)
        canvas.destinationCrsChanged.connect(self.outline_extent)
        self.visibilityChanged.connect(lambda _visible: self.outline_extent())

    def outline_extent(self) -> None:
        if self.extent_outline is None:
            return
        following = self.extent_widget.extentState() == QgsExtentWidget.CurrentExtent
        shown = not self.isHidden() and not following  # the panel is open (not closed by the user)
        self.extent_outline.show(self.current_extent() if shown else None)

    def remove_extent_outline(self) -> None:
        if self.extent_outline is not None:
            with contextlib.suppress(TypeError):
                self.extent_outline.canvas.destinationCrsChanged.disconnect(self.outline_extent)
            self.extent_outline.remove()
            self.extent_outline = None

    # --- the panel's own arithmetic ----------------------------------------------------------------
    def update_size_label(self) -> None:
        """What the extent covers and its pixels at the resolution now; the engine's estimate follows."""
        self._estimate_generation += 1  # whatever is in flight describes an older choice
        self._estimable = False
        self.outline_extent()
        extent = self.current_extent()
        if extent is None:
            self._show_estimate("choose an extent", "", "")
            return
        crs, y = extent.crs(), extent.center().y()
        gsd = self.gsd_spin.value()
        try:
            width, height = pixel_size(QgsRectangle(extent), metres_to_map_units(gsd, crs, y))
        except CaptureError as error:
            self._show_estimate(str(error), "", "")
            return
        one_metre = metres_to_map_units(1.0, crs, y)
        ground = ground_text(extent.width() / one_metre, extent.height() / one_metre)
        self._show_estimate(ground, f"{width:,} × {height:,} px", "estimating…")
        self._estimable = True
        self.schedule_estimate()

    def _show_estimate(self, output: str, model: str, time: str) -> None:
        self._size_text = output
        self.size_label.setText(output)
        self.model_label.setText(model)
        self.time_label.setText(time)

    # --- the engine's estimate -------------------------------------------------------------------
    def schedule_estimate(self) -> None:
        """(Re)start the debounce timer: the estimate is asked once the choices stop changing."""
        if not self._closed:
            self._estimate_timer.start()

    def estimate_capture(self, path: Path):
        """What a run would hand the engine (CaptureResult), without rendering anything."""
        extent = self.current_extent()
        if extent is None:
            raise CaptureError("choose an extent")
        gsd = self.gsd_spin.value()
        layer = self.layer_combo.currentLayer()
        if self.source_combo.currentIndex() == SOURCE_LAYER:
            if not isinstance(layer, QgsRasterLayer):
                raise CaptureError("choose a raster layer")
            if file_source_path(layer) is not None:
                return capture_file_layer(layer, QgsRectangle(extent), extent.crs(), gsd)
            # Rendered first by the algorithm: over the extent in the layer's CRS.
            area = transform_extent(QgsRectangle(extent), extent.crs(), layer.crs()).intersect(layer.extent())
            return rendered_grid_stand_in(area, layer.crs(), gsd, path)
        return rendered_grid_stand_in(QgsRectangle(extent), extent.crs(), gsd, path)

    def vocabulary_edited(self) -> None:
        """Ask again when the classes an estimate would send differ from the last one's: their number of
        queries sets how many windows a wide raster evaluates twice. Colour edits ask nothing."""
        if self._estimable and self._estimate_classes() != self._classes_estimated:
            self.update_size_label()

    def _estimate_classes(self) -> list[str] | None:
        """The vocabulary's classes for the estimate, or None while it is not usable yet."""
        vocabulary = self.vocabulary()
        try:
            vocabulary.validate()
        except VocabularyError:
            return None
        return vocabulary.to_lines().splitlines()

    def start_estimate(self) -> None:
        """Ask the engine (on a background thread) for the run's pixels and windows."""
        if self._closed or not self._estimable:
            return
        generation = self._estimate_generation
        if not engine_python().exists():
            self.time_label.setText("the engine is not set up yet (Engine ▸ Set up engine)")
            return
        stand_in = Path(self._render_dir.name) / f"estimate_{generation}.vrt"
        try:
            capture = self.estimate_capture(stand_in)
            options = json.loads(self.engine_options_edit.text().strip() or "{}")
        except (CaptureError, ValueError) as error:
            self.time_label.setText(f"no estimate ({error})")
            return
        self._classes_estimated = self._estimate_classes()
        options = options if isinstance(options, dict) else {}
        trained = self.trained_items.chosen()
        if trained is not None:  # a trained AerOSeg model: its own window size, classes and GSD
            options = {**options, "model": trained.path}
        args = estimate_args(
            capture,
            options,
            self._classes_estimated,
            method=self.method_combo.currentData(),
            device=self.device_combo.currentData(),
        )
        job = EstimateJob(engine_service.shared_client(), args, parent=self)

        def done() -> None:
            if self._closed:
                return
            self._estimates.remove(job)
            job.deleteLater()
            with contextlib.suppress(OSError):
                stand_in.unlink(missing_ok=True)
            if generation != self._estimate_generation:
                return  # the choices changed meanwhile; a newer estimate is on its way
            if job.result is not None:
                self.last_estimate = job.result
                self.sam3_row.show_missing(job.result.get("missing_weights") or [])
                self.sam3_row.update((job.result.get("time") or {}).get("device"))
                output = output_text(job.result) + estimate_warnings(job.result)
                self._show_estimate(output, model_text(job.result), time_text(job.result))
            else:
                self.last_estimate = None
                self.time_label.setText(f"no estimate ({job.error})")
                engine_service.log("warning", f"estimate failed: {job.error}")

        job.done.connect(done)
        self._estimates.append(job)
        self.estimates_sent += 1
        job.start()
