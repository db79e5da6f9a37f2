"""The assessment's figure (confusion matrix heat map and per-class IoU bars, drawn by the engine):
a thumbnail at the panel's width, and a window that shows it large enough to read."""

from __future__ import annotations

from pathlib import Path

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QGuiApplication, QPixmap
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QLabel, QSizePolicy, QVBoxLayout, QWidget

# The window takes at most this share of the screen; the figure is never enlarged beyond its pixels.
SCREEN_SHARE = 0.8


class FigureLabel(QLabel):
    """The figure scaled to the panel's width; a click opens ``FigureWindow``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self.path: Path | None = None
        self.window_shown: FigureWindow | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Click to see the figure large")

    def show_figure(self, path: Path | None) -> None:
        self.path = path
        pixmap = QPixmap(str(path)) if path is not None else None
        self._pixmap = pixmap if pixmap is not None and not pixmap.isNull() else None
        self.setVisible(self._pixmap is not None)
        self._rescale()

    def resizeEvent(self, event):  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is None:
            self.clear()
            return
        width = min(max(self.width(), 100), self._pixmap.width())
        scaled = self._pixmap.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)
        self.setPixmap(scaled)
        self.setFixedHeight(scaled.height())

    def mouseReleaseEvent(self, event):  # noqa: N802 (Qt API)
        super().mouseReleaseEvent(event)
        if self._pixmap is not None:
            self.open_window()

    def open_window(self) -> FigureWindow:
        if self.window_shown is not None:
            self.window_shown.close()
        self.window_shown = FigureWindow(self._pixmap, self.path, self.window())
        self.window_shown.show()
        return self.window_shown


class FigureWindow(QDialog):
    """The figure at its own size, or as large as fits ``SCREEN_SHARE`` of the screen; not modal."""

    def __init__(self, pixmap: QPixmap, path: Path | None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Accuracy figure: {path.name}" if path is not None else "Accuracy figure")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        layout = QVBoxLayout(self)
        screen = QGuiApplication.primaryScreen()
        room = screen.availableGeometry().size() * SCREEN_SHARE if screen is not None else pixmap.size()
        shown = pixmap
        if pixmap.width() > room.width() or pixmap.height() > room.height():
            shown = pixmap.scaled(
                room, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        self.image_label = QLabel(self)
        self.image_label.setPixmap(shown)
        layout.addWidget(self.image_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        layout.addWidget(buttons)
