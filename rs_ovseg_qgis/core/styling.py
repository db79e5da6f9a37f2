"""Renderers that show a class raster and its polygons with the vocabulary's names and colours."""

from __future__ import annotations

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFillSymbol,
    QgsPalettedRasterRenderer,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from .vocabulary import Vocabulary

CLASS_FIELD = "class_id"


def palette_classes(vocabulary: Vocabulary) -> list[QgsPalettedRasterRenderer.Class]:
    """Raster value i + 1 → class i's colour and name (0 = unclassified stays transparent)."""
    return [
        QgsPalettedRasterRenderer.Class(index, QColor(item.color), item.name)
        for index, item in enumerate(vocabulary.classes, start=1)
    ]


def style_class_layer(layer: QgsRasterLayer, vocabulary: Vocabulary) -> QgsPalettedRasterRenderer:
    """Give ``layer`` a paletted renderer whose legend shows the vocabulary's class names."""
    renderer = QgsPalettedRasterRenderer(layer.dataProvider(), 1, palette_classes(vocabulary))
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return renderer


def style_polygon_layer(layer: QgsVectorLayer, vocabulary: Vocabulary) -> QgsCategorizedSymbolRenderer:
    """Categorize polygons on ``class_id`` with the same colours and names as the raster."""
    categories = []
    for index, item in enumerate(vocabulary.classes, start=1):
        symbol = QgsFillSymbol.createSimple({"color": item.color, "outline_style": "no"})
        categories.append(QgsRendererCategory(index, symbol, item.name))
    renderer = QgsCategorizedSymbolRenderer(CLASS_FIELD, categories)
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return renderer


def save_default_style(layer: QgsRasterLayer | QgsVectorLayer, qml_path: str) -> None:
    """Write ``<name>.qml`` beside the file so that QGIS styles it whenever the file is opened."""
    message, ok = layer.saveNamedStyle(qml_path)
    if not ok:
        raise OSError(f"could not save the style {qml_path}: {message}")
