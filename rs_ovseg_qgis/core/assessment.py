"""An accuracy report of the engine's ``evaluate`` command as QGIS shows it.

The report (JSON, written by the engine) holds the confusion matrix with rows = reference classes and
columns = map classes, both in ``classes`` order, and per-class IoU, precision (user's accuracy), recall
(producer's accuracy) and F1. Here it becomes a non-spatial table with one row per reference class, and
the headline figures for the panel. Nothing here talks to the engine or touches a layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsFeature, QgsField, QgsFields
from qgis.PyQt.QtCore import QVariant

# The table's own columns; map-class count columns are named after the classes and must not clash.
REFERENCE_COLUMN = "reference"
TOTAL_COLUMN = "total"
METRIC_COLUMNS = ("iou", "precision", "recall", "f1")
# Hectares per class from the report's good-practice area estimates (Olofsson et al. 2014): the map's
# area of the class, its error-adjusted area and that estimate's 95 % confidence half-width.
AREA_COLUMNS = ("mapped_ha", "adjusted_ha", "adjusted_ci95_ha")
# Custom property of a run's layer-tree group (or layer node) that keeps its latest report's path.
REPORT_PROPERTY = "rs_ovseg/assessment_report"


class ReportError(ValueError):
    """The engine's answer or a report file is not an accuracy report; the message says what is missing."""


@dataclass(frozen=True)
class ClassFigures:
    name: str
    iou: float | None  # None: the class is in neither map nor reference (undefined, not in the mean)
    precision: float | None
    recall: float | None
    f1: float | None


@dataclass(frozen=True)
class Summary:
    """The panel's figures; accuracies are fractions 0..1, None where the report has none."""

    overall_accuracy: float | None
    kappa: float | None
    miou: float | None
    mf1: float | None
    classes: list[ClassFigures]
    assessed_pixels: int
    notes: list[str]  # the engine's remarks (unmatched codes, bands, layers used)


def report_from_result(result: dict) -> dict:
    """The report dict in a worker ``evaluate`` result (the report itself, or under ``"report"``)."""
    report = result.get("report") if isinstance(result.get("report"), dict) else result
    check_report(report)
    return report


def read_report(path: str | Path) -> dict:
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReportError(f"the accuracy report {path} cannot be read: {error}") from error
    check_report(report)
    return report


def check_report(report) -> None:
    if not isinstance(report, dict):
        raise ReportError("the engine's answer holds no accuracy report")
    missing = [key for key in ("classes", "confusion_matrix", "per_class") if key not in report]
    if missing:
        raise ReportError(f"the accuracy report lacks {', '.join(missing)}")
    size = len(report["classes"])
    matrix = report["confusion_matrix"]
    if len(matrix) != size or any(len(row) != size for row in matrix):
        raise ReportError(f"the confusion matrix is not {size} × {size} (one row and column per class)")


def _figure(value) -> float | None:
    return None if value is None else float(value)


def summarize(report: dict) -> Summary:
    per_class = report["per_class"]
    classes = [
        ClassFigures(
            name,
            *(_figure((per_class.get(name) or {}).get(metric)) for metric in METRIC_COLUMNS),
        )
        for name in report["classes"]
    ]
    return Summary(
        overall_accuracy=_figure(report.get("overall_accuracy")),
        kappa=_figure(report.get("kappa")),
        miou=_figure(report.get("miou")),
        mf1=_figure(report.get("mf1")),
        classes=classes,
        assessed_pixels=int(sum(sum(row) for row in report["confusion_matrix"])),
        notes=[str(note) for note in report.get("notes") or []],
    )


def nothing_assessed_reason(report: dict) -> str:
    """Why a report counts no pixel, in words for a QGIS user (the engine's notes name CLI options)."""
    codes = report.get("unmatched_reference_codes") or {}
    names = report.get("unmatched_reference_names") or {}  # code → name, for references with names
    if codes:
        listed = ", ".join(str(names.get(code, code)) for code in list(codes)[:8])
        classes = ", ".join(name for name in report["classes"] if name != "unclassified")
        return f"the reference's classes {listed} match no map class ({classes}): give a class mapping"
    not_assessed = report.get("not_assessed_pixels") or {}
    if not_assessed.get("ignored_reference_codes"):
        return "every reference pixel has the ignored value"
    return "no reference label falls on the map: check that the reference covers the map"


def count_column_names(classes: list[str]) -> list[str]:
    """One column name per map class: the class name, made unique (case-insensitively, as GeoPackage
    and shapefile field names are) against the table's own columns and each other."""
    taken = {name.lower() for name in (REFERENCE_COLUMN, TOTAL_COLUMN, *METRIC_COLUMNS, *AREA_COLUMNS)}
    names = []
    for name in classes:
        candidate = base = name.strip() or "class"
        if candidate.lower() in taken:
            candidate = base = f"map_{base}"
        number = 1
        while candidate.lower() in taken:
            number += 1
            candidate = f"{base}_{number}"
        taken.add(candidate.lower())
        names.append(candidate)
    return names


def confusion_fields(classes: list[str]) -> QgsFields:
    """``reference`` (text), a pixel count per map class, ``total``, the row class's metrics and areas."""
    fields = QgsFields()
    fields.append(QgsField(REFERENCE_COLUMN, QVariant.String))
    for name in count_column_names(classes):
        fields.append(QgsField(name, QVariant.LongLong))
    fields.append(QgsField(TOTAL_COLUMN, QVariant.LongLong))
    for metric in (*METRIC_COLUMNS, *AREA_COLUMNS):
        fields.append(QgsField(metric, QVariant.Double))
    return fields


def class_areas_ha(report: dict, name: str) -> list[float | None]:
    """``AREA_COLUMNS`` of one class; None where the report has no estimate (e.g. an unmapped class)."""
    estimates = report.get("area_estimates") or {}
    if estimates.get("unit") != "ha":
        return [None] * len(AREA_COLUMNS)
    figures = (estimates.get("per_class") or {}).get(name) or {}
    area = figures.get("area") or {}
    return [_figure(figures.get("mapped_area")), _figure(area.get("estimate")), _figure(area.get("ci95"))]


def confusion_rows(report: dict) -> list[list]:
    """One row per reference class: its name, pixels per map class, row total, IoU/precision/recall/F1
    and the class's areas in hectares (None where undefined)."""
    summary = summarize(report)
    rows = []
    for figures, counts in zip(summary.classes, report["confusion_matrix"]):
        counts = [int(value) for value in counts]
        metrics = [figures.iou, figures.precision, figures.recall, figures.f1]
        rows.append([figures.name, *counts, sum(counts), *metrics, *class_areas_ha(report, figures.name)])
    return rows


def confusion_features(report: dict) -> list[QgsFeature]:
    """The rows as features without geometry, with ``confusion_fields(report["classes"])``."""
    fields = confusion_fields(list(report["classes"]))
    features = []
    for row in confusion_rows(report):
        feature = QgsFeature(fields)
        feature.setAttributes(row)
        features.append(feature)
    return features


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"
