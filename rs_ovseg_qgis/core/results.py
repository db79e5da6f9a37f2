"""A finished run into the project: one layer group per run, above the input layer, styled layers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qgis.core import (
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

from .styling import style_class_layer, style_confidence_layer, style_polygon_layer
from .vocabulary import Vocabulary


@dataclass
class RunOutputs:
    """Files one run wrote (the engine: classes, confidence, sidecar; the plugin: polygons)."""

    classes: Path
    confidence: Path | None = None
    polygons: Path | None = None


def _insert_group(project: QgsProject, name: str, above: QgsMapLayer | None) -> QgsLayerTreeGroup:
    root = project.layerTreeRoot()
    node = root.findLayer(above.id()) if above is not None else None
    parent = node.parent() if node is not None else root
    index = parent.children().index(node) if node is not None else 0
    return parent.insertGroup(index, name)


def add_run_to_project(
    outputs: RunOutputs,
    vocabulary: Vocabulary,
    group_name: str,
    project: QgsProject | None = None,
    above: QgsMapLayer | None = None,
) -> QgsLayerTreeGroup:
    """Load, style and group the run's layers; the group sits just above ``above`` (else on top)."""
    project = project or QgsProject.instance()
    layers: list[QgsMapLayer] = []
    if outputs.polygons is not None:
        uri = f"{outputs.polygons}|layername=classes"
        polygons = QgsVectorLayer(uri, f"{vocabulary.name} polygons", "ogr")
        if not polygons.isValid():
            raise OSError(f"QGIS cannot open the polygons {outputs.polygons}")
        style_polygon_layer(polygons, vocabulary)
        layers.append(polygons)
    classes = QgsRasterLayer(str(outputs.classes), f"{vocabulary.name} classes", "gdal")
    if not classes.isValid():
        raise OSError(f"QGIS cannot open the class raster {outputs.classes}")
    style_class_layer(classes, vocabulary)
    layers.append(classes)
    if outputs.confidence is not None:
        confidence = QgsRasterLayer(str(outputs.confidence), f"{vocabulary.name} confidence", "gdal")
        if confidence.isValid():
            style_confidence_layer(confidence)
            layers.append(confidence)
    group = _insert_group(project, group_name, above)
    for layer in layers:
        project.addMapLayer(layer, False)
        group.addLayer(layer)
    if outputs.confidence is not None:  # shown on demand: it would hide the classes underneath
        node = group.findLayer(layers[-1].id())
        if node is not None:
            node.setItemVisibilityChecked(False)
    return group
