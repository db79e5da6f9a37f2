"""The panel's "Accuracy" section: "Assess against reference…", progress, and the result.

After a run the dock offers the run's class raster here. The assessment itself is ``rs_ovseg:assess``
in a QgsTask (core.assess_run); this section shows overall accuracy, kappa, mIoU and mF1, a per-class
table (IoU, precision = user's accuracy, recall = producer's accuracy) and the engine's figure.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from qgis.core import Qgis, QgsLayerTreeGroup, QgsMapLayer, QgsProject, QgsRasterLayer
from qgis.gui import QgsCollapsibleGroupBox
from qgis.PyQt.QtCore import Qt, QUrl
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.assess_run import AssessPlan, AssessRun, plan_assess_files
from ..core.assessment import REPORT_PROPERTY, ReportError, percent, read_report, summarize
from ..core.capture import file_source_path
from .assess_dialog import AssessDialog
from .assess_figure import FigureLabel

CLASS_COLUMNS = ("Class", "IoU", "Precision", "Recall")
CLASS_COLUMN_TIPS = (
    "Reference class",
    "Intersection over union",
    "User's accuracy: of the pixels mapped as the class, the share that is the class",
    "Producer's accuracy: of the class's reference pixels, the share mapped as the class",
)


class AssessSection(QgsCollapsibleGroupBox):
    """``show_message(text, level)`` reports to the user (the dock's); ``output_folder()`` says where
    assessments are written (the dock's output folder)."""

    def __init__(self, parent, show_message: Callable, output_folder: Callable[[], Path]):
        super().__init__("Accuracy", parent)
        self.setCollapsed(True)
        self.show_message = show_message
        self.output_folder = output_folder
        self.map_layer: QgsMapLayer | None = None  # the map the dialog proposes (the last run's)
        self.dialog: AssessDialog | None = None
        self.run: AssessRun | None = None
        self.report: dict | None = None
        self.report_path: Path | None = None
        layout = QVBoxLayout(self)
        buttons = QHBoxLayout()
        self.assess_button = QPushButton("Assess against reference…", self)
        self.assess_button.setToolTip(
            "Compare a class raster with reference labels (a raster or polygons): confusion matrix, "
            "overall accuracy, kappa, per-class IoU"
        )
        self.assess_button.clicked.connect(self.open_dialog)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.assess_button, 1)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        # The result's widgets live in their own container: expanding a QgsCollapsibleGroupBox shows
        # every widget it hid when collapsing, including ones this section hides on purpose.
        result = QWidget(self)
        result_layout = QVBoxLayout(result)
        result_layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(result)
        self.progress_bar = QProgressBar(result)
        self.progress_bar.setRange(0, 100)
        self.progress_bar.hide()
        result_layout.addWidget(self.progress_bar)
        self.summary_label = QLabel(result)
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextFormat(Qt.TextFormat.RichText)
        self.summary_label.setOpenExternalLinks(True)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        result_layout.addWidget(self.summary_label)
        self.class_table = QTableWidget(0, len(CLASS_COLUMNS), result)
        self.class_table.setHorizontalHeaderLabels(list(CLASS_COLUMNS))
        for column, tip in enumerate(CLASS_COLUMN_TIPS):
            self.class_table.horizontalHeaderItem(column).setToolTip(tip)
        self.class_table.verticalHeader().hide()
        self.class_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.class_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.class_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(CLASS_COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.class_table.hide()
        result_layout.addWidget(self.class_table)
        self.figure_label = FigureLabel(result)
        self.figure_label.hide()
        result_layout.addWidget(self.figure_label)
        self.figure_hint = QLabel("Click the figure to see it large", result)
        self.figure_hint.setStyleSheet("color: gray")
        self.figure_hint.hide()
        result_layout.addWidget(self.figure_hint)
        layout.addStretch(1)  # room the panel has to spare goes below the result, not between its lines

    # --- what the dock tells it --------------------------------------------------------------------
    def offer_run(self, group: QgsLayerTreeGroup | None, classes_path: str | Path | None) -> None:
        """A run finished: propose its class raster, and show its earlier report if it has one."""
        layer = find_classes_layer(group, classes_path)
        if layer is None:
            return
        self.map_layer = layer
        self.setCollapsed(False)
        kept = group.customProperty(REPORT_PROPERTY) if group is not None else None
        if kept and Path(kept).is_file():
            self.show_report_file(Path(kept))

    def shutdown(self) -> None:
        if self.run is not None and self.run.is_running():
            self.run.cancel()
        if self.dialog is not None:
            self.dialog.reject()

    # --- assessing ---------------------------------------------------------------------------------
    def open_dialog(self) -> None:
        if self.run is not None and self.run.is_running():
            return
        map_layer = self.map_layer if _alive(self.map_layer) else None
        self.dialog = AssessDialog(self.window(), map_layer)
        self.dialog.accepted.connect(self._dialog_accepted)
        self.dialog.open()

    def _dialog_accepted(self) -> None:
        dialog, self.dialog = self.dialog, None
        try:
            parameters = dialog.parameters()
            self.start(parameters)
        except (ValueError, OSError) as error:
            self.show_message(str(error), Qgis.Warning)
        finally:
            dialog.deleteLater()

    def start(self, parameters: dict) -> None:
        """Plans the output files beside each other in the output folder, then runs ``rs_ovseg:assess``."""
        map_layer = parameters["INPUT"]
        map_path = file_source_path(map_layer) if isinstance(map_layer, QgsRasterLayer) else map_layer
        if not map_path:
            raise ValueError("the map must be a class raster file (a GeoTIFF written by a run)")
        files = plan_assess_files(self.output_folder(), map_path)
        parameters = {
            **parameters,
            "OUTPUT_REPORT": str(files["report"]),
            "OUTPUT_FIGURE": str(files["figure"]),
            "OUTPUT_TABLE": str(files["table"]),
        }
        plan = AssessPlan(parameters, map_layer if isinstance(map_layer, QgsMapLayer) else None)
        self.run = AssessRun(plan, parent=self)
        self.run.progress.connect(self._progress)
        self.run.finished.connect(self._finished)
        self.assess_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        self.setCollapsed(False)
        self._clear_result()  # an earlier result must not stand beside this run's failure
        self.summary_label.setText("assessing…")
        self.run.start()

    def cancel(self) -> None:
        if self.run is not None and self.run.is_running():
            self.summary_label.setText("cancelling…")
            self.run.cancel()

    def _progress(self, percent_done: float, text: str) -> None:
        self.progress_bar.setValue(int(percent_done))
        if text:
            self.summary_label.setText(text)

    def _finished(self, status: str, message: str) -> None:
        self.assess_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress_bar.hide()
        if status == "ok":
            self.show_report(self.run.report, self.run.report_path, self.run.figure_path)
            self.show_message(message, Qgis.Success)
            return
        self.summary_label.setText(html.escape(message))
        self.show_message(message, Qgis.Info if status == "cancelled" else Qgis.Critical)

    def _clear_result(self) -> None:
        self.report, self.report_path = None, None
        self.summary_label.clear()
        self.class_table.hide()
        self.figure_label.show_figure(None)
        self.figure_hint.hide()

    # --- the result --------------------------------------------------------------------------------
    def show_report_file(self, path: Path) -> None:
        try:
            report = read_report(path)
        except ReportError as error:
            self.summary_label.setText(html.escape(str(error)))
            return
        figure = path.with_suffix(".png")
        self.show_report(report, path, figure if figure.is_file() else None)

    def show_report(self, report: dict, report_path: Path | None, figure_path: Path | None) -> None:
        self.report, self.report_path = report, report_path
        summary = summarize(report)
        lines = [
            f"<b>Overall accuracy {percent(summary.overall_accuracy)}</b> · "
            f"<b>mIoU {percent(summary.miou)}</b>",
            f"kappa {_plain(summary.kappa)} · mF1 {percent(summary.mf1)} · "
            f"{summary.assessed_pixels:,} pixels assessed",
        ]
        compared = compared_inputs(report)
        if compared:
            lines.append(html.escape(compared))
        if report_path is not None:
            url = QUrl.fromLocalFile(str(report_path)).toString()
            lines.append(f'report: <a href="{url}">{html.escape(report_path.name)}</a>')
        self.summary_label.setText("<br>".join(lines))
        self.class_table.setRowCount(len(summary.classes))
        for row, figures in enumerate(summary.classes):
            values = [figures.name, percent(figures.iou), percent(figures.precision), percent(figures.recall)]
            for column, value in enumerate(values):
                item = QTableWidgetItem(value)
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.class_table.setItem(row, column, item)
        self.class_table.resizeRowsToContents()
        height = self.class_table.horizontalHeader().height() + 2 * self.class_table.frameWidth()
        height += sum(self.class_table.rowHeight(row) for row in range(len(summary.classes)))
        self.class_table.setFixedHeight(height)  # every class visible: the panel scrolls, not the table
        self.class_table.show()
        self.figure_label.show_figure(figure_path)
        self.figure_hint.setVisible(not self.figure_label.isHidden())


def compared_inputs(report: dict) -> str:
    """ "map.tif against reference.gpkg (field class)" from the report's inputs; empty if it has none."""
    inputs = report.get("inputs") or {}
    prediction = (inputs.get("prediction") or {}).get("path")
    reference = inputs.get("reference") or {}
    if not prediction or not reference.get("path"):
        return ""
    field = f" (field {reference['field']})" if reference.get("field") else ""
    return f"{Path(prediction).name} against {Path(reference['path']).name}{field}"


def _plain(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _alive(layer: QgsMapLayer | None) -> bool:
    """The layer is still in the project (a removed layer's Python object outlives the C++ one)."""
    return layer is not None and QgsProject.instance().mapLayer(_layer_id(layer)) is not None


def _layer_id(layer: QgsMapLayer) -> str:
    try:
        return layer.id()
    except RuntimeError:  # the C++ layer was deleted
        return ""


def find_classes_layer(
    group: QgsLayerTreeGroup | None, classes_path: str | Path | None
) -> QgsMapLayer | None:
    """The run's class raster layer in its group (the layer whose file is ``classes_path``)."""
    if group is None or not classes_path:
        return None
    wanted = Path(classes_path).resolve()
    for node in group.findLayers():
        layer = node.layer()
        path = file_source_path(layer)
        if path is not None and Path(path).resolve() == wanted:
            return layer
    return None
