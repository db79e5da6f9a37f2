"""The RS OVSeg dock panel: vocabulary, input, extent, resolution, method; Run/Cancel with progress.

The dock only collects choices and shows state: the run itself is the ``rs_ovseg:segment`` Processing
algorithm in a QgsTask (core.segment_run), and the engine talk lives in core.engine_client.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from datetime import datetime
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsReferencedRectangle,
    QgsVectorLayer,
)
from qgis.gui import (
    QgsCollapsibleGroupBox,
    QgsDoubleSpinBox,
    QgsExtentWidget,
    QgsMapLayerComboBox,
)
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..core import engine_service
from ..core.capture import (
    CaptureError,
    capture_rendered,
    file_source_path,
    metres_to_map_units,
    native_gsd_m,
)
from ..core.estimate import EstimateJob
from ..core.method_defaults import method_defaults
from ..core.outputs import OutputLocationError, output_dir, plan_run_files, run_label
from ..core.segment_run import RunPlan, SegmentRun
from ..core.vocabulary import Vocabulary, VocabularyError
from ..definitions import DEVICES, METHODS, SOURCE_LAYER
from .advanced_section import AdvancedSection
from .assess_section import AssessSection
from .engine_section import EngineSection
from .project_state import DEFAULT_VOCABULARY_PRESET, ProjectState
from .sam3_row import Sam3Row
from .trained_method_items import TrainedModelItems
from .vocabulary_editor import VocabularyEditor
from .work_estimate import TIME_TOOLTIP, WorkEstimate

DOCK_OBJECT_NAME = "RsOvsegDock"
# The engine's estimate waits until the extent, resolution or input stop changing this long (ms):
# dragging a spin box must not send a request per step.
ESTIMATE_DELAY_MS = 400


ESTIMATE_STOP_WAIT_S = 5.0  # an estimate answers within a second once told to cancel


class RsOvsegDock(ProjectState, WorkEstimate, QDockWidget):
    """Collects the vocabulary and the extent, runs the engine and shows progress."""

    def __init__(self, parent=None, iface=None):
        super().__init__("RS OVSeg", parent)
        self.setObjectName(DOCK_OBJECT_NAME)
        self.iface = iface
        self.run: SegmentRun | None = None
        self._render_dir = tempfile.TemporaryDirectory(prefix="rs_ovseg_")
        self._closed = False
        self._size_text = ""  # the output line as last shown (ui.work_estimate)
        self._estimable = False  # an extent and a resolution that give a pixel size
        self._estimate_generation = 0  # answers to older requests are dropped
        self._classes_estimated: list[str] | None = None  # the vocabulary lines the last estimate sent
        self.last_estimate: dict | None = None
        self.estimates_sent = 0
        self._estimates: list[EstimateJob] = []  # in flight, kept alive for their signal
        self._estimate_timer = QTimer(self)
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(ESTIMATE_DELAY_MS)
        self._estimate_timer.timeout.connect(self.start_estimate)

        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # fits ~300 px
        body = QWidget(scroll)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(6, 6, 6, 6)

        # --- vocabulary
        vocabulary_box = QgsCollapsibleGroupBox("Vocabulary", body)
        self.vocabulary_box = vocabulary_box
        vocabulary_layout = QVBoxLayout(vocabulary_box)
        self.vocabulary_editor = VocabularyEditor(vocabulary_box)
        self.vocabulary_editor.preset_combo.setCurrentText(DEFAULT_VOCABULARY_PRESET)
        self.vocabulary_editor.error.connect(lambda message: self.show_message(message, Qgis.Warning))
        vocabulary_layout.addWidget(self.vocabulary_editor)
        layout.addWidget(vocabulary_box, 1)

        # --- input, extent, resolution
        where_box = QgsCollapsibleGroupBox("Input and extent", body)
        form = QFormLayout(where_box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.source_combo = QComboBox(where_box)
        self.source_combo.addItems(["Raster layer", "What the map shows"])
        self.source_combo.setToolTip(
            "A raster layer (read from its file when possible), or every visible layer, basemaps "
            "included, rendered at the resolution"
        )
        form.addRow("Input", self.source_combo)
        self.layer_combo = QgsMapLayerComboBox(where_box)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        form.addRow("Layer", self.layer_combo)
        self.extent_widget = QgsExtentWidget(where_box, QgsExtentWidget.CondensedStyle)
        form.addRow("Extent", self.extent_widget)
        self.selection_button = QPushButton("Selected features", where_box)
        self.selection_button.setToolTip("Extent of the selected features of the active vector layer")
        self.selection_button.clicked.connect(self.use_selection_extent)
        form.addRow("", self.selection_button)
        self.gsd_spin = QgsDoubleSpinBox(where_box)
        self.gsd_spin.setRange(0.01, 10_000.0)
        self.gsd_spin.setDecimals(2)
        self.gsd_spin.setSuffix(" m/px")
        self.gsd_spin.setValue(1.0)
        self.gsd_spin.setToolTip(
            "The resolution the model looks at: the ground size of one pixel it sees (metres per pixel). "
            "The input is resampled to it; the output keeps the input's own pixels (a rendered map: these)."
            " Coarser is faster; objects need a few of these pixels to be found."
        )
        self.gsd_default_button = QPushButton("Default", where_box)
        self.gsd_default_button.setToolTip(
            "The layer's pixel size × 1000/448, as SegEarth-OV sees OpenEarthMap"
        )
        self.gsd_default_button.clicked.connect(self.reset_gsd)
        gsd_row = QHBoxLayout()
        gsd_row.addWidget(self.gsd_spin, 1)
        gsd_row.addWidget(self.gsd_default_button)
        # What the run writes first, then what the model looks at (the setting users change) and its
        # grid: two resolutions, told apart by their labels (engine estimate: ui.work_estimate).
        self.size_label = QLabel(where_box)  # the output raster
        self.size_label.setWordWrap(True)
        self.size_label.setToolTip("The class raster the run writes: its pixels, pixel size and ground")
        form.addRow("Output", self.size_label)
        form.addRow("Model sees", gsd_row)
        self.model_label = QLabel(where_box)
        self.model_label.setWordWrap(True)
        self.model_label.setToolTip(
            "The extent at the model's resolution, and the sliding windows of the model that cover it"
        )
        form.addRow("", self.model_label)
        self.method_combo = QComboBox(where_box)
        for name, label in METHODS:
            self.method_combo.addItem(label, name)
        self.trained_items = TrainedModelItems(self.method_combo)  # "AerOSeg — NAME, trained on …"
        form.addRow("Method", self.method_combo)
        self.device_combo = QComboBox(where_box)
        for name, label in DEVICES:
            self.device_combo.addItem(label, name)
        form.addRow("Device", self.device_combo)
        self.sam3_row = Sam3Row(where_box, form, self.method_combo, self.device_combo)  # SegEarth-OV3 only
        self.time_label = QLabel(where_box)
        self.time_label.setWordWrap(True)
        self.time_label.setToolTip(TIME_TOOLTIP)
        form.addRow("Expected time", self.time_label)
        for combo in (self.source_combo, self.method_combo, self.device_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(10)
        self.layer_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        layout.addWidget(where_box)

        # --- advanced
        self.advanced_section = AdvancedSection(body)
        for name in ("threshold_spin", "engine_options_edit", "polygons_check", "confidence_check"):
            setattr(self, name, getattr(self.advanced_section, name))
        self.output_widget = self.advanced_section.output_widget
        self.output_widget.fileChanged.connect(self._output_dir_changed)
        layout.addWidget(self.advanced_section)

        # --- engine
        self.engine_section = EngineSection(
            body, self.show_message, lambda text: self.status_label.setText(text)
        )
        self.python_widget = self.engine_section.python_widget
        layout.addWidget(self.engine_section)

        # --- run
        run_row = QHBoxLayout()
        self.run_button = QPushButton("Run", body)
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start_run)
        self.cancel_button = QPushButton("Cancel", body)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_run)
        run_row.addWidget(self.run_button, 1)
        run_row.addWidget(self.cancel_button)
        layout.addLayout(run_row)
        self.progress_bar = QProgressBar(body)
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        layout.addWidget(self.progress_bar)
        self.status_label = QLabel("Ready", body)
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status_label)

        # --- accuracy (offered after a run)
        self.assess_section = AssessSection(
            body, self.show_message, lambda: Path(self.output_widget.filePath() or output_dir())
        )
        layout.addWidget(self.assess_section)

        scroll.setWidget(body)
        self.setWidget(scroll)
        self.setMinimumWidth(300)

        canvas = self.iface.mapCanvas() if self.iface is not None else None
        if canvas is not None:
            self.extent_widget.setMapCanvas(canvas)
            # Both: a project's first layer changes the extent first and the CRS just after.
            canvas.extentsChanged.connect(self.follow_map_view)
            canvas.destinationCrsChanged.connect(self.follow_map_view)
            self.attach_extent_outline(canvas)  # the chosen extent on the map (ui.work_estimate)
            self.follow_map_view()
        self._connect_project_state()
        self.source_combo.currentIndexChanged.connect(self._source_changed)
        self.layer_combo.layerChanged.connect(self._layer_changed)
        self.extent_widget.extentChanged.connect(lambda _extent: self.update_size_label())
        self.gsd_spin.valueChanged.connect(lambda _value: self.update_size_label())
        for combo in (self.method_combo, self.device_combo):  # windows and their speed depend on both
            combo.currentIndexChanged.connect(lambda _index: self.update_size_label())
        self.method_combo.currentIndexChanged.connect(lambda _index: self.method_changed())
        self.vocabulary_editor.model.vocabularyChanged.connect(self.show_method_defaults)
        self.show_method_defaults()
        self.engine_options_edit.editingFinished.connect(self.schedule_estimate)
        self._layer_changed(self.layer_combo.currentLayer())

    # --- life cycle ----------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Before the dock goes (plugin unload): stop a run and estimates, let go of the project's signals."""
        self._closed = True
        self.trained_items.close()
        self._estimate_timer.stop()
        for job in self._estimates:
            job.cancel()
        for job in self._estimates:
            job.wait(ESTIMATE_STOP_WAIT_S)
        if self.run is not None and self.run.is_running():
            self.run.cancel()
        project = QgsProject.instance()
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        if canvas is not None:
            for signal in (canvas.extentsChanged, canvas.destinationCrsChanged):
                with contextlib.suppress(TypeError):
                    signal.disconnect(self.follow_map_view)
            self.remove_extent_outline()
        for signal, slot in (
            (project.readProject, self._project_read),
            (project.cleared, self.load_project_state),
        ):
            with contextlib.suppress(TypeError):
                signal.disconnect(slot)
        self.assess_section.shutdown()
        self._render_dir.cleanup()

    # --- choices -----------------------------------------------------------------------------------
    def vocabulary(self) -> Vocabulary:
        return self.vocabulary_editor.vocabulary()

    def follow_map_view(self) -> None:
        """The extent is the current map view (the default) until the user chooses another one."""
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        if canvas is None or self._closed:
            return
        following = self.extent_widget.extentState() == QgsExtentWidget.CurrentExtent
        if following or self.current_extent() is None:
            self.extent_widget.setCurrentExtent(canvas.extent(), canvas.mapSettings().destinationCrs())
            self.extent_widget.setOutputExtentFromCurrent()

    def _source_changed(self, index: int) -> None:
        self.layer_combo.setEnabled(index == SOURCE_LAYER)
        self.reset_gsd()

    def _layer_changed(self, layer) -> None:
        if layer is not None:
            self.extent_widget.setOriginalExtent(layer.extent(), layer.crs())
        self.reset_gsd()

    def reset_gsd(self) -> None:
        """The default resolution: the reference behaviour for a layer read from its file, the screen's
        for the map and for layers rendered first (WMS, XYZ: their "pixel size" is no ground size).
        A trained AerOSeg model's default is the GSD it learnt at, whatever the source."""
        layer = self.layer_combo.currentLayer()
        gsd = self.trained_items.training_gsd()
        from_file = isinstance(layer, QgsRasterLayer) and file_source_path(layer) is not None
        if gsd:
            pass  # the model sees the ground best at the scale it was trained on
        elif self.source_combo.currentIndex() == SOURCE_LAYER and from_file:
            native = native_gsd_m(layer)
            gsd = native * self.method_defaults().gsd_factor if native else None
        elif self.iface is not None and self.iface.mapCanvas() is not None:
            canvas = self.iface.mapCanvas()
            units_per_pixel = canvas.mapUnitsPerPixel()
            one_metre = metres_to_map_units(
                1.0, canvas.mapSettings().destinationCrs(), canvas.extent().center().y()
            )
            gsd = units_per_pixel / one_metre if one_metre > 0 and units_per_pixel > 0 else None
        if gsd:
            self.gsd_spin.setValue(round(gsd, 2) or 0.01)
        self.update_size_label()

    # --- the method's defaults ----------------------------------------------------------------------
    def method_defaults(self):
        return method_defaults(self.method_combo.currentData())

    def method_changed(self) -> None:
        """A new method brings its defaults: its working resolution and threshold (a class's Min the
        user typed stays; the panel says what it means for this method)."""
        self.threshold_spin.setValue(0.0)  # "method default": another method's value means another thing
        self.reset_gsd()
        self.show_method_defaults()

    def show_method_defaults(self) -> None:
        defaults = self.method_defaults()
        vocabulary_value = self.vocabulary().method_thresholds.get(defaults.name)
        self.advanced_section.show_method(defaults, vocabulary_value)
        self.vocabulary_editor.model.threshold_meaning = defaults.threshold_meaning
        self.gsd_default_button.setToolTip(f"The method's default: {defaults.gsd_rule}")

    def current_extent(self) -> QgsReferencedRectangle | None:
        extent = self.extent_widget.outputExtent()
        if extent is None or extent.isEmpty():
            return None
        return QgsReferencedRectangle(extent, self.extent_widget.outputCrs())

    def use_selection_extent(self) -> None:
        layer = self.iface.activeLayer() if self.iface is not None else None
        if not isinstance(layer, QgsVectorLayer) or layer.selectedFeatureCount() == 0:
            self.show_message("select features in a vector layer first (the active layer)", Qgis.Info)
            return
        self.extent_widget.setOutputExtentFromUser(layer.boundingBoxOfSelected(), layer.crs())

    # --- run ---------------------------------------------------------------------------------------
    def build_plan(self) -> RunPlan:
        """Parameters of ``rs_ovseg:segment`` for the current choices (renders the map view if chosen)."""
        vocabulary = self.vocabulary()
        vocabulary.validate()
        extent = self.current_extent()
        files = plan_run_files(self.output_widget.filePath() or output_dir(), vocabulary.name, datetime.now())
        parameters = {
            "CLASSES": vocabulary.to_lines(),
            "VOCABULARY": vocabulary.to_json(),
            "METHOD": self.method_combo.currentIndex(),
            "FIDELITY": self.advanced_section.fidelity_combo.currentIndex(),
            "DEVICE": self.device_combo.currentIndex(),
            "RESOLUTION": self.gsd_spin.value(),
            "OUTPUT": str(files["classes"]),
            **self.sam3_row.parameters(),
        }
        parameters.update(self.trained_items.plan_parameters())  # a trained AerOSeg model, if chosen
        if self.threshold_spin.value() > 0:
            parameters["THRESHOLD"] = self.threshold_spin.value()
        options = self.engine_options_edit.text().strip()
        if options:
            json.loads(options)  # a JSON error is reported before anything runs
            parameters["ENGINE_OPTIONS"] = options
        if self.polygons_check.isChecked():
            parameters["OUTPUT_POLYGONS"] = str(files["polygons"])
        if self.confidence_check.isChecked():
            parameters["OUTPUT_CONFIDENCE"] = str(files["confidence"])
        if self.advanced_section.warp_check.isChecked():
            parameters["WARP"] = True
        above = None
        if self.source_combo.currentIndex() == SOURCE_LAYER:
            layer = self.layer_combo.currentLayer()
            if layer is None:
                raise CaptureError('choose a raster layer, or "What the map shows"')
            parameters["INPUT"] = layer
            if extent is not None:
                parameters["EXTENT"] = extent
            above = layer
        else:
            if extent is None:
                raise CaptureError("choose an extent to render")
            layers = self.iface.mapCanvas().layers() if self.iface is not None else []
            layers = layers or QgsProject.instance().layerTreeRoot().checkedLayers()
            rendered = Path(self._render_dir.name) / f"{files['classes'].stem}_map.tif"
            capture = capture_rendered(
                layers, QgsRectangle(extent), extent.crs(), self.gsd_spin.value(), rendered
            )
            parameters["INPUT"] = capture.path
            # Rendered at the chosen resolution already: the same value keeps its pixels one to one
            # (0 would ask for the method's default working resolution over them).
            parameters["RESOLUTION"] = self.gsd_spin.value()
        return RunPlan(parameters, vocabulary, run_label(vocabulary.name, datetime.now()), above)

    def start_run(self) -> None:
        if self.run is not None and self.run.is_running():
            return
        try:
            plan = self.build_plan()
        except (VocabularyError, CaptureError, OutputLocationError, ValueError, OSError) as error:
            self.show_message(str(error), Qgis.Warning)
            return
        self.run = SegmentRun(plan, parent=self)
        self.run.progress.connect(self._progress)
        self.run.finished.connect(self._finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setValue(0)
        self.status_label.setText("starting the engine…")
        self.run.start()

    def cancel_run(self) -> None:
        if self.run is not None and self.run.is_running():
            self.status_label.setText("cancelling…")
            self.run.cancel()

    def _progress(self, percent: float, text: str) -> None:
        self.progress_bar.setValue(int(percent))
        if text:
            self.status_label.setText(text)

    def _finished(self, status: str, message: str) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.status_label.setText(message)
        self.update_size_label()  # the engine holds the model now and has measured its speed
        if status == "ok":
            self.progress_bar.setValue(100)
            self.assess_section.offer_run(self.run.group, self.run.plan.parameters.get("OUTPUT"))
            self.show_message(message, Qgis.Success)
        elif status == "cancelled":
            self.progress_bar.setValue(0)
            self.show_message(message, Qgis.Info)
        else:
            self.progress_bar.setValue(0)
            self.show_message(message, Qgis.Critical)

    # --- messages ----------------------------------------------------------------------------------
    def show_message(self, message: str, level=Qgis.Info) -> None:
        """Errors and results in QGIS's message bar; everything also in the log panel."""
        engine_service.log("error" if level == Qgis.Critical else "info", message)
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is not None:
            bar.pushMessage("RS OVSeg", message, level, 8 if level != Qgis.Critical else 0)
        self.last_message = (message, level)
