"""One run started from the dock: the ``rs_ovseg:segment`` algorithm in a QgsTask, then its layers.

The dock gives the parameters; this object runs the same Processing algorithm as the toolbox in
QGIS's task manager (progress, cancel), and only when it succeeds adds the styled group to the project.
A cancelled or failed run adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from qgis.core import QgsApplication, QgsMapLayer, QgsProject

from .algorithm_task import AlgorithmRun
from .results import RunOutputs, add_run_to_project
from .vocabulary import Vocabulary


@dataclass
class RunPlan:
    parameters: dict
    vocabulary: Vocabulary
    group_name: str
    above: QgsMapLayer | None = None  # the input layer; the group goes just above it


class SegmentRun(AlgorithmRun):
    """Signals: ``progress(percent, text)``, ``finished(status, message)`` with status "ok",
    "cancelled" or "failed"."""

    def __init__(self, plan: RunPlan, project: QgsProject | None = None, parent=None):
        super().__init__(project, parent)
        self.plan = plan
        self.algorithm = None  # the instance this run checks and runs (kept alive with the run)
        self.group = None

    def start(self) -> None:
        registered = QgsApplication.processingRegistry().algorithmById("rs_ovseg:segment")
        if registered is not None:
            # A fresh instance: its parameters were made now, so they offer the AerOSeg models trained
            # since the provider loaded (the registered one lists those of that moment).
            algorithm = self.algorithm = registered.create()
        else:  # the provider is not registered (e.g. Processing disabled)
            from ..processing.segment_algorithm import SegmentAlgorithm

            algorithm = self.algorithm = SegmentAlgorithm()
            algorithm.initAlgorithm()
        self._launch(algorithm, self.plan.parameters, f"RS OVSeg: {self.plan.vocabulary.name}")

    def _succeeded(self, results: dict) -> None:
        outputs = RunOutputs(
            classes=results["OUTPUT"],
            confidence=results.get("OUTPUT_CONFIDENCE") or None,
            polygons=results.get("OUTPUT_POLYGONS") or None,
        )
        try:
            self.group = add_run_to_project(
                outputs, self.plan.vocabulary, self.plan.group_name, self.project, self.plan.above
            )
        except OSError as error:
            self._finish("failed", str(error))
            return
        self._finish("ok", f"added {self.plan.group_name}")
