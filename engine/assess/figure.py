"""The report's figure: the confusion matrix as a heat map (row-normalised: each reference class's
pixels split over the map's classes, counts written in the cells) beside the per-class IoU bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def draw_figure(report: dict, path: Path) -> None:
    """A PNG at ``path``; labels stay readable up to a few dozen classes (the figure grows with them)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib import pyplot as plt

    names = report["classes"]
    matrix = np.asarray(report["confusion_matrix"], dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    k = len(names)
    side = max(4.0, 0.55 * k + 2.5)
    figure, (heat, bars) = plt.subplots(
        1, 2, figsize=(side * 2.0, side), gridspec_kw={"width_ratios": [1.15, 1.0]}, constrained_layout=True
    )
    image = heat.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    heat.set_xticks(range(k), names, rotation=45, ha="right")
    heat.set_yticks(range(k), names)
    heat.set_xlabel("map")
    heat.set_ylabel("reference")
    heat.set_title("Confusion matrix\n(share of each reference class; pixel counts)")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                colour = "white" if share[i, j] > 0.6 else "black"
                heat.text(j, i, f"{int(matrix[i, j]):,}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=heat, fraction=0.046, pad=0.04)
    ious = [report["per_class"][n]["iou"] for n in names]
    values = [0.0 if v is None else v for v in ious]
    positions = np.arange(k)
    bars.barh(positions, values, color=["#bbbbbb" if v is None else "#2b7bba" for v in ious])
    for y, v in zip(positions, ious):
        bars.text(
            0.01 if v is None else v + 0.01, y, "n/a" if v is None else f"{v:.2f}", va="center", fontsize=8
        )
    bars.set_yticks(positions, names)
    bars.invert_yaxis()
    bars.set_xlim(0.0, 1.1)
    bars.set_xlabel("IoU")
    miou = report.get("miou")
    oa = report.get("overall_accuracy")
    summary = [
        "mIoU " + ("n/a" if miou is None else f"{miou:.3f}"),
        "OA " + ("n/a" if oa is None else f"{oa:.3f}"),
    ]
    bars.set_title("Per-class IoU\n" + "  ·  ".join(summary))
    figure.savefig(path, dpi=110, format="png")
    plt.close(figure)
