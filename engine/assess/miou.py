"""mIoU exactly as mmseg's ``IoUMetric`` computes it.

Per image: labels with ``reduce_zero_label`` become ``label − 1`` with 0 → ignore (255); pixels whose
label is the ignore index are dropped; per class c in 0..C−1, intersection = pixels predicted c and
labelled c, predicted area, label area (values outside 0..C−1 fall outside every class's histogram bin
but the pixel still counts as not ignored), union = predicted + label − intersection. These four are
summed over the whole dataset (not averaged per image); IoU_c = Σ intersection / Σ union, undefined
(NaN, left out of the mean) where Σ union is 0; aAcc = Σ intersection / Σ label area.
"""

from __future__ import annotations

import numpy as np


def reduce_zero_label(label: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """mmseg's ``reduce_zero_label``: 0 → ignore, others − 1 (255 stays ignored)."""
    out = label.astype(np.int64)
    out[out == 0] = ignore_index + 1  # becomes ignore_index after the shift
    out = out - 1
    out[out == ignore_index - 1] = ignore_index  # a label that was ignore_index stays ignored
    return out


def image_areas(prediction: np.ndarray, label: np.ndarray, classes: int, ignore_index: int = 255) -> dict:
    """{"intersect", "union", "pred", "label"}: (C,) int64 pixel counts of one image."""
    keep = label != ignore_index
    pred, lab = prediction[keep].astype(np.int64), label[keep].astype(np.int64)

    def histogram(values: np.ndarray) -> np.ndarray:
        inside = (values >= 0) & (values < classes)
        return np.bincount(values[inside], minlength=classes)[:classes]

    intersect = histogram(pred[pred == lab])
    area_pred, area_label = histogram(pred), histogram(lab)
    return {
        "intersect": intersect,
        "union": area_pred + area_label - intersect,
        "pred": area_pred,
        "label": area_label,
    }


def dataset_miou(totals: dict) -> dict:
    """{"iou": (C,) float with NaN where no union, "miou", "aacc"} from summed areas."""
    intersect = np.asarray(totals["intersect"], dtype=np.float64)
    union = np.asarray(totals["union"], dtype=np.float64)
    label = np.asarray(totals["label"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersect / union
    defined = ~np.isnan(iou)
    return {
        "iou": iou,
        "miou": float(iou[defined].mean()) if defined.any() else None,
        "aacc": float(intersect.sum() / label.sum()) if label.sum() > 0 else None,
    }
