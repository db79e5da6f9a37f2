"""Validation on the held-out pixels: the model over windows covering them, IoU per class."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from engine.assess.metrics import mean_of_defined, overall_figures, per_class_figures
from engine.methods.aeroseg.training.labels import IGNORE, UNLABELLED


def predict_classes(model, rgb: torch.Tensor, text: torch.Tensor, query_class: torch.Tensor) -> torch.Tensor:
    """(B, 3, c, c) float crops → (B, c, c) class numbers 1..K (max over a class's queries)."""
    logits = model(rgb, text).logits
    logits = F.interpolate(logits.float(), size=rgb.shape[-2:], mode="bilinear", align_corners=False)
    classes = int(query_class.max())
    per_class = torch.stack([logits[:, query_class == k].amax(dim=1) for k in range(1, classes + 1)], dim=1)
    return per_class.argmax(dim=1) + 1


@torch.no_grad()
def validate(model, images, held_out, names: list[str], text, query_class, crop: int, device) -> dict:
    """{"classes": per-class figures, "miou", "overall_accuracy", "pixels"} on the held-out pixels."""
    classes = len(names)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    was_training = model.training
    model.eval()
    try:
        for image, mask in zip(images, held_out):
            if not mask.any():
                continue
            rows, cols = np.nonzero(mask)
            for top in range(int(rows.min()) // crop * crop, int(rows.max()) + 1, crop):
                for left in range(int(cols.min()) // crop * crop, int(cols.max()) + 1, crop):
                    window = mask[top : top + crop, left : left + crop]
                    labels = image.labels[top : top + crop, left : left + crop]
                    counted = window & (labels != UNLABELLED) & (labels != IGNORE)
                    if not counted.any():
                        continue
                    rgb = np.zeros((3, crop, crop), dtype=np.float32)
                    rgb[:, : labels.shape[0], : labels.shape[1]] = image.rgb[
                        :, top : top + crop, left : left + crop
                    ]
                    tensor = torch.from_numpy(rgb)[None].to(device)
                    predicted = predict_classes(model, tensor, text, query_class)[0].cpu().numpy()
                    predicted = predicted[: labels.shape[0], : labels.shape[1]]
                    np.add.at(confusion, (labels[counted].astype(int) - 1, predicted[counted] - 1), 1)
    finally:
        model.train(was_training)
    figures = per_class_figures(confusion, names)
    return {
        "classes": figures,
        "miou": mean_of_defined(f["iou"] for f in figures.values()),
        "overall_accuracy": overall_figures(confusion)["overall_accuracy"],
        "pixels": int(confusion.sum()),
    }
