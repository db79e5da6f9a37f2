"""The RS OVSeg dock panel."""

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QDockWidget, QLabel, QVBoxLayout, QWidget

DOCK_OBJECT_NAME = "RsOvsegDock"


class RsOvsegDock(QDockWidget):
    """Collects the vocabulary and the extent, runs the engine and shows progress."""

    def __init__(self, parent=None):
        super().__init__("RS OVSeg", parent)
        self.setObjectName(DOCK_OBJECT_NAME)
        body = QWidget(self)
        layout = QVBoxLayout(body)
        title = QLabel("<h3>RS OVSeg</h3>Open-vocabulary land-cover segmentation", body)
        title.setWordWrap(True)
        self.controls_placeholder = QLabel(
            "Vocabulary, extent and resolution controls will appear here.", body
        )
        self.controls_placeholder.setWordWrap(True)
        self.controls_placeholder.setAlignment(Qt.AlignmentFlag.AlignTop)
        layout.addWidget(title)
        layout.addWidget(self.controls_placeholder, 1)
        self.setWidget(body)
