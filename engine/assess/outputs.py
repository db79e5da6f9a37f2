"""The report's files: JSON (every figure), CSV (the confusion matrix), PNG (heat map + IoU bars).

Each is written to a temporary file in its folder and renamed over its final name only when all of them
were written (engine.raster.writer.AtomicFiles): a failure leaves no half-written file.
"""

from __future__ import annotations

import csv as csv_module
from pathlib import Path

from engine.raster.sidecar import write_sidecar
from engine.raster.writer import AtomicFiles


def write_confusion_csv(path: Path, report: dict) -> None:
    """Reference classes down, map classes across (pixels), with row and column totals."""
    names = report["classes"]
    matrix = report["confusion_matrix"]
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv_module.writer(stream)
        writer.writerow(["reference \\ map", *names, "total"])
        for name, row in zip(names, matrix):
            writer.writerow([name, *row, sum(row)])
        columns = [sum(row[j] for row in matrix) for j in range(len(names))]
        writer.writerow(["total", *columns, sum(columns)])


def write_outputs(report: dict, *, report_path=None, csv=None, plot=None) -> None:
    """Write the files asked for (paths or None)."""
    files = AtomicFiles()
    try:
        if csv:
            write_confusion_csv(files.temporary_for(Path(csv).expanduser().resolve()), report)
        if plot:
            from .figure import draw_figure

            draw_figure(report, files.temporary_for(Path(plot).expanduser().resolve()))
        if report_path:
            write_sidecar(files.temporary_for(Path(report_path).expanduser().resolve()), report)
        files.commit()
    except BaseException:
        files.discard()
        raise
