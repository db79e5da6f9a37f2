"""The chosen extent drawn on the map while the panel is open, so that the area a run covers is seen,
not read from four coordinates in a narrow field."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateTransform,
    QgsGeometry,
    QgsProject,
    QgsReferencedRectangle,
    QgsWkbTypes,
)
from qgis.gui import QgsMapCanvas, QgsRubberBand
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor

OUTLINE_COLOUR = QColor(230, 0, 120)  # magenta: stands out on imagery and on the class palettes
OUTLINE_WIDTH_PX = 2


class ExtentOutline:
    """A dashed outline of one extent on ``canvas``; ``show(extent)`` / ``hide()`` / ``remove()``."""

    def __init__(self, canvas: QgsMapCanvas) -> None:
        self.canvas = canvas
        self.band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self.band.setStrokeColor(OUTLINE_COLOUR)
        self.band.setFillColor(QColor(0, 0, 0, 0))
        self.band.setWidth(OUTLINE_WIDTH_PX)
        self.band.setLineStyle(Qt.PenStyle.DashLine)
        self.extent: QgsReferencedRectangle | None = None

    def show(self, extent: QgsReferencedRectangle | None) -> None:
        """Outline ``extent`` (any CRS: drawn in the map's); None clears the outline."""
        self.extent = extent
        self.band.reset(QgsWkbTypes.PolygonGeometry)
        if extent is None or extent.isEmpty():
            return
        geometry = QgsGeometry.fromRect(extent)
        target = self.canvas.mapSettings().destinationCrs()
        if extent.crs().isValid() and target.isValid() and extent.crs() != target:
            transform = QgsCoordinateTransform(extent.crs(), target, QgsProject.instance())
            geometry = geometry.densifyByCount(8)  # edges straight in the extent's CRS bend in the map's
            geometry.transform(transform)
        self.band.setToGeometry(geometry, None)
        self.band.show()

    def hide(self) -> None:
        self.band.hide()

    def remove(self) -> None:
        self.band.reset(QgsWkbTypes.PolygonGeometry)
        scene = self.canvas.scene()
        if scene is not None:
            scene.removeItem(self.band)
