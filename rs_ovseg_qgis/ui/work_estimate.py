"""The dock's work estimate: the engine's count of pixels and windows for the current choices.

A mixin of ``RsOvsegDock`` (it reads the dock's widgets): asked on a plain thread, debounced, and
dropped when the choices changed meanwhile. Never renders anything: for input that a run would render,
a VRT with the same grid stands in.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from qgis.core import QgsRasterLayer, QgsRectangle

from ..core import engine_service
from ..core.capture import CaptureError, capture_file_layer, file_source_path, transform_extent
from ..core.estimate import EstimateJob, estimate_args, format_estimate, rendered_grid_stand_in
from ..core.settings import engine_python
from ..core.vocabulary import VocabularyError
from ..definitions import SOURCE_LAYER


class WorkEstimate:
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
            self._set_size_text(self._size_text, "engine: not set up yet (Engine ▸ Set up engine)")
            return
        stand_in = Path(self._render_dir.name) / f"estimate_{generation}.vrt"
        try:
            capture = self.estimate_capture(stand_in)
            options = json.loads(self.engine_options_edit.text().strip() or "{}")
        except (CaptureError, ValueError) as error:
            self._set_size_text(self._size_text, f"engine: no estimate ({error})")
            return
        self._classes_estimated = self._estimate_classes()
        args = estimate_args(capture, options if isinstance(options, dict) else {}, self._classes_estimated)
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
                self._set_size_text(self._size_text, format_estimate(job.result))
            else:
                self.last_estimate = None
                self._set_size_text(self._size_text, f"engine: no estimate ({job.error})")
                engine_service.log("warning", f"estimate failed: {job.error}")

        job.done.connect(done)
        self._estimates.append(job)
        self.estimates_sent += 1
        job.start()
