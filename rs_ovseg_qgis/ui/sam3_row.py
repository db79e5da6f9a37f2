"""The dock's SegEarth-OV3 row: its preset (the reference's settings per benchmark), on a CPU the plain
statement that SAM 3 needs a GPU for practical speed, and, when the engine's estimate says the SAM 3
weights are missing, the offer to download them (licence shown first; a hub token for the gated
repository). Shown only while SegEarth-OV3 is chosen."""

from __future__ import annotations

from qgis.PyQt.QtWidgets import (
    QComboBox,
    QFormLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QWidget,
)

from ..core import engine_service
from ..core.weights_download import DownloadJob
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
        self.weights_label = QLabel(parent)
        self.weights_label.setWordWrap(True)
        self.download_button = QPushButton("Download SAM 3 weights…", parent)
        self.download_button.clicked.connect(self.ask_and_download)
        form.addRow(self.weights_label)
        form.addRow("", self.download_button)
        self.missing: list[dict] = []
        self.job: DownloadJob | None = None
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
        offer = self.active and (bool(self.missing) or bool(self.weights_label.text()))
        self.weights_label.setVisible(offer)
        self.download_button.setVisible(self.active and bool(self.missing))

    # --- the weights -------------------------------------------------------------------------------
    def show_missing(self, missing: list[dict]) -> None:
        """The estimate's ``missing_weights``: offer their download (nothing to say when none)."""
        self.missing = list(missing or [])
        if self.missing and (self.job is None or not self.job.is_running()):
            entry = self.missing[0]
            self.weights_label.setText(
                f"The SAM 3 weights ({entry['name']}) are not downloaded yet; a run needs them. "
                f"Licence: {entry['licence']}."
            )
        elif not self.missing and (self.job is None or not self.job.is_running()):
            self.weights_label.setText("")
        self.update()

    def licence_text(self, entry: dict) -> str:
        gated = (
            f"The hub gives these weights only to accounts that accepted the licence: request access at "
            f"{entry.get('access')} first, then use a read token from https://huggingface.co/settings/tokens "
            "(or leave it empty if HF_TOKEN is set for the engine)."
            if entry.get("gated")
            else ""
        )
        return f"Download {entry['name']} under the {entry['licence']}?\n\n{gated}"

    def ask_and_download(self) -> None:
        """Show the licence, ask for a token (gated weights), then download through the engine."""
        if not self.missing:
            return
        entry = self.missing[0]
        parent = self.download_button.window()
        answer = QMessageBox.question(
            parent,
            "SAM 3 weights",
            self.licence_text(entry),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        token = None
        if entry.get("gated"):
            token, accepted = QInputDialog.getText(
                parent, "Hub token", "Hugging Face read token (empty: HF_TOKEN)", QLineEdit.EchoMode.Password
            )
            if not accepted:
                return
        self.start_download(entry["name"], token or None)

    def start_download(self, name: str, token: str | None = None) -> DownloadJob:
        self.job = DownloadJob(engine_service.shared_client(), name, token, parent=self.download_button)
        self.job.progress.connect(
            lambda fraction, text: self.weights_label.setText(text or f"downloading {name}: {fraction:.0%}")
        )
        self.job.done.connect(self._downloaded)
        self.download_button.setEnabled(False)
        self.weights_label.setText(f"downloading {name}…")
        self.job.start()
        return self.job

    def _downloaded(self) -> None:
        job = self.job
        self.download_button.setEnabled(True)
        if job.result is not None:
            self.missing = []
            self.weights_label.setText(f"Downloaded {job.result['name']} to {job.result['path']}")
        else:
            self.weights_label.setText(f"The download failed: {job.error}")
        self.update()

    def parameters(self) -> dict:
        """The algorithm's SAM3_PRESET parameter while SegEarth-OV3 is chosen."""
        return {"SAM3_PRESET": self.preset_combo.currentIndex()} if self.active else {}
