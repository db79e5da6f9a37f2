"""Accuracy figures of a confusion matrix (rows = reference, columns = map).

Per class: IoU = TP / (TP + FP + FN), precision (user's accuracy) = TP / map total, recall (producer's
accuracy) = TP / reference total, F1 = 2·TP / (reference total + map total). A figure whose denominator is
zero is undefined (``None``), never 0: a class absent from both map and reference has no IoU and, as in
mmseg's ``IoUMetric``, stays out of the mean (mIoU, mF1 average the defined values only).
Overall accuracy = trace / total; Cohen's kappa = (po − pe) / (1 − pe) with pe from the marginals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator) / float(denominator) if denominator > 0 else None


def per_class_figures(confusion: np.ndarray, names: Sequence[str]) -> dict[str, dict]:
    """{name: {iou, precision, recall, f1, reference_pixels, map_pixels, correct_pixels}}."""
    confusion = np.asarray(confusion, dtype=np.float64)
    figures = {}
    for k, name in enumerate(names):
        tp = confusion[k, k]
        reference_total = confusion[k, :].sum()
        map_total = confusion[:, k].sum()
        figures[name] = {
            "iou": _ratio(tp, reference_total + map_total - tp),
            "precision": _ratio(tp, map_total),
            "recall": _ratio(tp, reference_total),
            "f1": _ratio(2 * tp, reference_total + map_total),
            "reference_pixels": int(reference_total),
            "map_pixels": int(map_total),
            "correct_pixels": int(tp),
        }
    return figures


def mean_of_defined(values) -> float | None:
    """Mean of the values that are not None; None when none is defined."""
    defined = [v for v in values if v is not None]
    return float(sum(defined) / len(defined)) if defined else None


def overall_figures(confusion: np.ndarray) -> dict:
    """{overall_accuracy, kappa, assessed_pixels}; undefined figures are None."""
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum()
    if total <= 0:
        return {"overall_accuracy": None, "kappa": None, "assessed_pixels": 0}
    observed = np.trace(confusion) / total
    expected = float((confusion.sum(axis=1) * confusion.sum(axis=0)).sum() / (total * total))
    kappa = (observed - expected) / (1.0 - expected) if expected < 1.0 else None
    return {"overall_accuracy": float(observed), "kappa": kappa, "assessed_pixels": int(total)}
