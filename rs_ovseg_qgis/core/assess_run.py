"""One assessment started from the dock: ``rs_ovseg:assess`` in a QgsTask, then its table in the project.

Like a segment run (core.segment_run): the same Processing algorithm as the toolbox runs in QGIS's task
manager (progress, cancel). Only when it succeeds is the confusion-matrix table added to the map's layer
group and the report's path kept on that group (``REPORT_PROPERTY``), so the project remembers which
report belongs to which run. A cancelled or failed assessment adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsLayerTreeGroup,
    QgsLayerTreeNode,
    QgsMapLayer,
    QgsProject,
    QgsVectorLayer,
)

from ..definitions import ASSESS_ALGORITHM_ID, PROVIDER_ID
from .algorithm_task import AlgorithmRun
from .assessment import REPORT_PROPERTY, ReportError, percent, read_report, summarize
from .outputs import check_output_dir, unique_stem

# Files one assessment writes beside each other, by role.
ASSESS_SUFFIXES = {"report": ".json", "figure": ".png", "table": "_confusion.gpkg"}


def plan_assess_files(directory: str | Path, map_path: str | Path) -> dict[str, Path]:
    """``<map stem>_assessment.json/.png`` and ``…_confusion.gpkg`` in ``directory``, none existing yet."""
    directory = check_output_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = unique_stem(directory, f"{Path(map_path).stem}_assessment", list(ASSESS_SUFFIXES.values()))
    return {role: directory / f"{stem}{suffix}" for role, suffix in ASSESS_SUFFIXES.items()}


def run_node(project: QgsProject, layer: QgsMapLayer) -> QgsLayerTreeNode | None:
    """Where a map's assessment is kept: the layer's group (a run's group), else the layer's own node."""
    node = project.layerTreeRoot().findLayer(layer.id())
    if node is None:
        return None
    parent = node.parent()
    if isinstance(parent, QgsLayerTreeGroup) and parent is not project.layerTreeRoot():
        return parent
    return node


@dataclass
class AssessPlan:
    """``parameters`` of ``rs_ovseg:assess`` (OUTPUT_TABLE a GeoPackage path); ``map_layer``: the class
    raster's layer, whose group receives the table and the report's path."""

    parameters: dict
    map_layer: QgsMapLayer | None = None


class AssessRun(AlgorithmRun):
    """Signals ``progress(percent, text)`` and ``finished(status, message)`` ("ok", "cancelled",
    "failed"). After "ok": ``report`` (dict), ``report_path``, ``figure_path`` (None without figure),
    ``table`` (the layer added)."""

    OUTPUT_KEY = "OUTPUT_REPORT"
    CANCELLED_MESSAGE = "assessment cancelled: nothing was added to the project"
    FAILED_MESSAGE = "the assessment failed (see the RS OVSeg log)"

    def __init__(self, plan: AssessPlan, project: QgsProject | None = None, parent=None):
        super().__init__(project, parent)
        self.plan = plan
        self.report: dict | None = None
        self.report_path: Path | None = None
        self.figure_path: Path | None = None
        self.table: QgsVectorLayer | None = None

    def start(self) -> None:
        algorithm = QgsApplication.processingRegistry().algorithmById(f"{PROVIDER_ID}:{ASSESS_ALGORITHM_ID}")
        if algorithm is None:  # the provider is not registered (e.g. Processing disabled)
            from ..processing.assess_algorithm import AssessAlgorithm

            algorithm = AssessAlgorithm()
            algorithm.initAlgorithm()
        self._launch(algorithm, self.plan.parameters, "RS OVSeg: accuracy assessment")

    def _succeeded(self, results: dict) -> None:
        try:
            self.report = read_report(results["OUTPUT_REPORT"])
        except ReportError as error:
            self._finish("failed", str(error))
            return
        self.report_path = Path(results["OUTPUT_REPORT"])
        figure = results.get("OUTPUT_FIGURE")
        self.figure_path = Path(figure) if figure and Path(figure).is_file() else None
        table = QgsVectorLayer(str(results["OUTPUT_TABLE"]), "Confusion matrix", "ogr")
        if not table.isValid():
            self._finish("failed", f"QGIS cannot open the confusion matrix {results['OUTPUT_TABLE']}")
            return
        self.table = table
        self._keep_with_run(table)
        summary = summarize(self.report)
        name = self.plan.map_layer.name() if self.plan.map_layer is not None else "the map"
        self._finish(
            "ok",
            f"assessed {name}: overall accuracy {percent(summary.overall_accuracy)}, "
            f"mIoU {percent(summary.miou)}",
        )

    def _keep_with_run(self, table: QgsVectorLayer) -> None:
        node = run_node(self.project, self.plan.map_layer) if self.plan.map_layer is not None else None
        self.project.addMapLayer(table, False)
        if isinstance(node, QgsLayerTreeGroup):
            node.addLayer(table)
        else:  # beside the map (or on top): a table has no place in the drawing order anyway
            parent = node.parent() if node is not None else self.project.layerTreeRoot()
            index = parent.children().index(node) if node is not None else 0
            parent.insertLayer(index, table)
        if node is not None:
            node.setCustomProperty(REPORT_PROPERTY, str(self.report_path))

    def _finish(self, status: str, message: str) -> None:
        # Layers Processing opened from file paths (a reference given as a file) live in the context's
        # store; let them go now, not whenever Python collects this object (maybe after QGIS is gone).
        self.context.temporaryLayerStore().removeAllMapLayers()
        super()._finish(status, message)
