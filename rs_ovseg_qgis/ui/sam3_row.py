"""The dock's SegEarth-OV3 row: its preset (the reference's settings per benchmark) and, on a CPU, the
plain statement that SAM 3 needs a GPU for practical speed. Shown only while SegEarth-OV3 is chosen."""

from __future__ import annotations

from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QLabel, QWidget

from ..definitions import SAM3_PRESETS

METHOD = "segearth-ov3"
CPU_NOTE = (
    "SAM 3 is a large model: on a CPU each 512-px window takes tens of seconds (see Expected time). "
    "A CUDA GPU is needed for practical speed."
)


class Sam3Row:
    """Preset combo and CPU note in ``form``, below the Method and Device rows they depend on."""

    def __init__(self, parent: QWidget, form: QFormLayout, method_combo: QComboBox, device_combo: QComboBox):
        self.method_combo, self.device_combo = method_combo, device_combo
        self.preset_combo = QComboBox(parent)
        for name, label in SAM3_PRESETS:
            self.preset_combo.addItem(label, name)
        self.preset_combo.setToolTip(
            "SegEarth-OV3's settings for imagery like this benchmark's: window size, the confidence an "
            "object needs, and the threshold (an explicit threshold in Advanced still wins)"
        )
        self.preset_label = QLabel("SAM 3 preset", parent)
        form.addRow(self.preset_label, self.preset_combo)
        self.cpu_note = QLabel(CPU_NOTE, parent)
        self.cpu_note.setWordWrap(True)
        form.addRow("", self.cpu_note)
        method_combo.currentIndexChanged.connect(lambda _index: self.update())
        device_combo.currentIndexChanged.connect(lambda _index: self.update())
        self.update()

    @property
    def active(self) -> bool:
        return self.method_combo.currentData() == METHOD

    def update(self, device_in_use: str | None = None) -> None:
        """Show the row for SegEarth-OV3; the CPU note when the chosen device (or, for "auto", the one
        the engine's estimate reported) is the CPU."""
        device = self.device_combo.currentData()
        if device == "auto" and device_in_use:
            device = device_in_use
        for widget in (self.preset_label, self.preset_combo):
            widget.setVisible(self.active)
        self.cpu_note.setVisible(self.active and device in ("cpu", "auto"))

    def parameters(self) -> dict:
        """The algorithm's SAM3_PRESET parameter while SegEarth-OV3 is chosen."""
        return {"SAM3_PRESET": self.preset_combo.currentIndex()} if self.active else {}
