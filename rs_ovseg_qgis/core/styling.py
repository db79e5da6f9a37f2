"""Renderers that show a class raster and its polygons with the vocabulary's names and colours."""

from __future__ import annotations

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsColorRampShader,
    QgsFillSymbol,
    QgsPalettedRasterRenderer,
    QgsRasterLayer,
    QgsRasterShader,
    QgsRendererCategory,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from .vocabulary import Vocabulary

CLASS_FIELD = "class_id"
# The confidence raster (the winning class's probability) on one fixed 0–1 scale, viridis: the same
# colour means the same confidence in every run (a min–max stretch would make each run's own scale).
CONFIDENCE_STOPS = [
    (0.0, "#440154", "0 (unsure)"),
    (0.25, "#3b528b", "0.25"),
    (0.5, "#21918c", "0.5"),
    (0.75, "#5ec962", "0.75"),
    (1.0, "#fde725", "1 (sure)"),
]


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


def style_confidence_layer(layer: QgsRasterLayer) -> QgsSingleBandPseudoColorRenderer:
    """Colour the confidence (0–1) on the fixed CONFIDENCE_STOPS scale, its legend labelled."""
    ramp = QgsColorRampShader(0.0, 1.0)
    ramp.setColorRampType(QgsColorRampShader.Interpolated)
    ramp.setColorRampItemList(
        [
            QgsColorRampShader.ColorRampItem(value, QColor(colour), label)
            for value, colour, label in CONFIDENCE_STOPS
        ]
    )
    shader = QgsRasterShader(0.0, 1.0)
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(1.0)
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return renderer


def save_default_style(layer: QgsRasterLayer | QgsVectorLayer, qml_path: str) -> None:
    """Write ``<name>.qml`` beside the file so that QGIS styles it whenever the file is opened."""
    message, ok = layer.saveNamedStyle(qml_path)
    if not ok:
        raise OSError(f"could not save the style {qml_path}: {message}")
