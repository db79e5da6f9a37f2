"""One run started from the dock: the ``rs_ovseg:segment`` algorithm in a QgsTask, then its layers.

The dock gives the parameters; this object runs the same Processing algorithm as the toolbox in
QGIS's task manager (progress, cancel), and only when it succeeds adds the styled group to the project.
A cancelled or failed run adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from qgis.core import (
    QgsApplication,
    QgsMapLayer,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsTask,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal

from .results import RunOutputs, add_run_to_project
from .vocabulary import Vocabulary


class _Feedback(QgsProcessingFeedback):
    """Keeps the algorithm's error and log lines so the dock can show the reason of a failure."""

    def __init__(self):
        super().__init__()
        self.errors: list[str] = []
        self.lines: list[str] = []
        self.text = ""  # the latest progress text (set from the task's thread, read with the progress)

    def setProgressText(self, text):  # noqa: N802 (QGIS API)
        self.text = text
        super().setProgressText(text)

    def reportError(self, error, fatalError=False):  # noqa: N802, N803 (QGIS API)
        self.errors.append(error)
        super().reportError(error, fatalError)

    def pushInfo(self, info):  # noqa: N802 (QGIS API)
        self.lines.append(info)
        super().pushInfo(info)


@dataclass
class RunPlan:
    parameters: dict
    vocabulary: Vocabulary
    group_name: str
    above: QgsMapLayer | None = None  # the input layer; the group goes just above it


class SegmentRun(QObject):
    """Signals: ``progress(percent, text)``, ``finished(status, message)`` with status "ok",
    "cancelled" or "failed"."""

    progress = pyqtSignal(float, str)
    finished = pyqtSignal(str, str)

    def __init__(self, plan: RunPlan, project: QgsProject | None = None, parent=None):
        super().__init__(parent)
        self.plan = plan
        self.project = project or QgsProject.instance()
        self.feedback = _Feedback()
        self.context = QgsProcessingContext()
        self.context.setProject(self.project)
        self.task: QgsProcessingAlgRunnerTask | None = None
        self.algorithm = None  # the instance this run checks and runs (kept alive with the run)
        self.group = None
        self.status: str | None = None

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
        ok, message = algorithm.checkParameterValues(self.plan.parameters, self.context)
        if not ok:
            self._finish("failed", message)
            return
        self.feedback.progressChanged.connect(lambda value: self.progress.emit(value, self.feedback.text))
        # The task runs the algorithm's prepareAlgorithm here (main thread), then the rest in a thread.
        self.task = QgsProcessingAlgRunnerTask(algorithm, self.plan.parameters, self.context, self.feedback)
        if self.task.status() == QgsTask.Terminated:
            # prepareAlgorithm failed inside the constructor (e.g. an extent outside the layer): the task
            # is cancelled before ``executed`` could be connected and will never run, so end here.
            reason = "; ".join(self.feedback.errors) or "the run could not be prepared (see the RS OVSeg log)"
            self._finish("failed", reason)
            return
        self.task.setDescription(f"RS OVSeg: {self.plan.vocabulary.name}")
        self.task.executed.connect(self._executed)
        QgsApplication.taskManager().addTask(self.task)

    def cancel(self) -> None:
        self.feedback.cancel()
        if self.task is not None:
            self.task.cancel()

    def is_running(self) -> bool:
        return self.task is not None and self.status is None

    def _executed(self, successful: bool, results: dict) -> None:
        if self.feedback.isCanceled():
            self._finish("cancelled", "cancelled: nothing was added to the project")
            return
        if not successful or not results.get("OUTPUT"):
            reason = "; ".join(self.feedback.errors) or "the run failed (see the RS OVSeg log)"
            self._finish("failed", reason)
            return
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

    def _finish(self, status: str, message: str) -> None:
        self.status = status
        self.finished.emit(status, message)
