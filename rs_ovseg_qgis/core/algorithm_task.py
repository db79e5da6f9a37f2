"""A Processing algorithm started from the dock and run in QGIS's task manager (progress, cancel).

``AlgorithmRun`` holds what a segment run (core.segment_run) and an assessment (core.assess_run) share:
the feedback that keeps the algorithm's errors, the task, the cancelled/failed ends and the
``progress``/``finished`` signals. A subclass picks the algorithm and says what to do with its results.
"""

from __future__ import annotations

from qgis.core import (
    QgsApplication,
    QgsProcessingAlgorithm,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsTask,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal


class TaskFeedback(QgsProcessingFeedback):
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


class AlgorithmRun(QObject):
    """Signals ``progress(percent, text)`` and ``finished(status, message)`` with status "ok",
    "cancelled" or "failed".

    A subclass sets ``OUTPUT_KEY`` (the result that must be there for success), ``CANCELLED_MESSAGE``
    and ``FAILED_MESSAGE`` (shown when the feedback has no error), calls ``_launch`` from its ``start``
    and handles a successful run's results in ``_succeeded``.
    """

    progress = pyqtSignal(float, str)
    finished = pyqtSignal(str, str)

    OUTPUT_KEY = "OUTPUT"
    CANCELLED_MESSAGE = "cancelled: nothing was added to the project"
    FAILED_MESSAGE = "the run failed (see the RS OVSeg log)"

    def __init__(self, project: QgsProject | None = None, parent=None):
        super().__init__(parent)
        self.project = project or QgsProject.instance()
        self.feedback = TaskFeedback()
        self.context = QgsProcessingContext()
        self.context.setProject(self.project)
        self.task: QgsProcessingAlgRunnerTask | None = None
        self.status: str | None = None

    def _launch(self, algorithm: QgsProcessingAlgorithm, parameters: dict, description: str) -> None:
        """Check ``parameters``, then run ``algorithm`` in a task (or end at once with the reason)."""
        ok, message = algorithm.checkParameterValues(parameters, self.context)
        if not ok:
            self._finish("failed", message)
            return
        self.feedback.progressChanged.connect(self._feedback_progress)
        # The task runs the algorithm's prepareAlgorithm here (main thread), then the rest in a thread.
        self.task = QgsProcessingAlgRunnerTask(algorithm, parameters, self.context, self.feedback)
        if self.task.status() == QgsTask.Terminated:
            # prepareAlgorithm failed inside the constructor (e.g. an extent outside the layer): the task
            # is cancelled before ``executed`` could be connected and will never run, so end here.
            reason = "; ".join(self.feedback.errors) or "the run could not be prepared (see the RS OVSeg log)"
            self._finish("failed", reason)
            return
        self.task.setDescription(description)
        self.task.executed.connect(self._executed)
        QgsApplication.taskManager().addTask(self.task)

    def _feedback_progress(self, value: float) -> None:  # queued to the main thread (a QObject slot)
        self.progress.emit(value, self.feedback.text)

    def cancel(self) -> None:
        self.feedback.cancel()
        if self.task is not None:
            self.task.cancel()

    def is_running(self) -> bool:
        return self.task is not None and self.status is None

    def _executed(self, successful: bool, results: dict) -> None:
        if self.feedback.isCanceled():
            self._finish("cancelled", self.CANCELLED_MESSAGE)
            return
        if not successful or not results.get(self.OUTPUT_KEY):
            reason = "; ".join(self.feedback.errors) or self.FAILED_MESSAGE
            self._finish("failed", reason)
            return
        self._succeeded(results)

    def _succeeded(self, results: dict) -> None:
        """Use a successful run's ``results`` (output name -> value); ends with ``_finish``."""
        raise NotImplementedError

    def _finish(self, status: str, message: str) -> None:
        self.status = status
        self.finished.emit(status, message)
