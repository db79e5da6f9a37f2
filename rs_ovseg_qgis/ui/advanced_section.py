"""The panel's "Advanced" section: threshold (and what it means for the method), fidelity, engine options,
extra outputs, output folder."""

from __future__ import annotations

from qgis.gui import QgsCollapsibleGroupBox, QgsDoubleSpinBox, QgsFileWidget
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QLineEdit

from ..core.method_defaults import FIDELITIES, MethodDefaults

FIDELITY_TOOLTIP = (
    "Fast: the engine's speed choices (ReSeg-CLIP: SAM on 896-px windows, the last crop shifted back "
    "inside the raster). Reference structure: as the published code does it (ReSeg-CLIP: SAM on each "
    "224-px crop, black padding at the raster edge; SegEarth-OV: the extent fitted inside 448 px); "
    "slower. The run's sidecar records which."
)


class AdvancedSection(QgsCollapsibleGroupBox):
    """Collapsed by default; the dock reads its widgets when it builds a run."""

    def __init__(self, parent):
        super().__init__("Advanced", parent)
        self.setCollapsed(True)
        form = QFormLayout(self)
        self.threshold_spin = QgsDoubleSpinBox(self)
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setDecimals(3)
        self.threshold_spin.setSpecialValueText("method default")
        self.threshold_spin.setValue(0.0)
        self.threshold_spin.setToolTip(
            "Pixels whose best score is below this stay unclassified (0 = the default below)"
        )
        form.addRow("Threshold", self.threshold_spin)
        # What the threshold (and each class's Min) compares for the chosen method, and its default.
        self.threshold_note = QLabel(self)
        self.threshold_note.setWordWrap(True)
        form.addRow("", self.threshold_note)
        self.fidelity_combo = QComboBox(self)
        for value, label in FIDELITIES:
            self.fidelity_combo.addItem(label, value)
        self.fidelity_combo.setToolTip(FIDELITY_TOOLTIP)
        form.addRow("Fidelity", self.fidelity_combo)
        self.engine_options_edit = QLineEdit(self)
        self.engine_options_edit.setPlaceholderText(
            '{"attention": "clearclip", "templates": "remote-sensing"}'
        )
        self.engine_options_edit.setToolTip(
            "Further engine settings as JSON: clip, upsampler, attention, templates, seed, batch_size"
        )
        form.addRow("Engine options", self.engine_options_edit)
        self.polygons_check = QCheckBox("Also write class polygons (GeoPackage)", self)
        self.confidence_check = QCheckBox("Also write a confidence raster", self)
        form.addRow(self.polygons_check)
        form.addRow(self.confidence_check)
        self.warp_check = QCheckBox("Warp GCP/RPC rasters to a north-up grid", self)
        self.warp_check.setToolTip(
            "Rasters placed by ground control points or RPCs (raw scenes, georeferenced scans): resample "
            "the result to a north-up grid instead of keeping the input's pixels with its GCPs/RPCs"
        )
        form.addRow(self.warp_check)
        self.output_widget = QgsFileWidget(self)
        self.output_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.output_widget.setToolTip("Where results are written; stored with the project")
        form.addRow("Output folder", self.output_widget)

    def show_method(self, defaults: MethodDefaults, vocabulary_value: float | None) -> None:
        """Say what the threshold means for this method and which default applies."""
        self.threshold_note.setText(defaults.threshold_text(vocabulary_value))
        self.confidence_check.setToolTip(
            "The confidence raster holds what the threshold compares: "
            + defaults.threshold_meaning.split(" (")[0]
        )
