"""The trained AerOSeg models as entries of the dock's method choice ("AerOSeg — NAME, trained on …"),
kept current as models are trained, and what choosing one sends to ``rs_ovseg:segment``."""

from __future__ import annotations

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QComboBox

from ..core import trained_models as store
from ..core.capture import CaptureError

#: Item data role holding a trained model's path (the item's ordinary data is the method, "aeroseg").
MODEL_ROLE = Qt.ItemDataRole.UserRole + 1


class TrainedModelItems:
    """Appends the remembered models after the combo's fixed methods; refreshes when one is trained."""

    def __init__(self, combo: QComboBox) -> None:
        self.combo = combo
        self.fixed = combo.count()  # the built-in methods come first and stay
        self.refresh()
        store.listeners.append(self.refresh)

    def refresh(self) -> None:
        chosen = self.combo.currentData(MODEL_ROLE)
        self.combo.blockSignals(True)
        try:
            while self.combo.count() > self.fixed:
                self.combo.removeItem(self.combo.count() - 1)
            for model in store.trained_models():
                self.combo.addItem(model.label, store.METHOD)
                index = self.combo.count() - 1
                self.combo.setItemData(index, model.path, MODEL_ROLE)
                self.combo.setItemData(
                    index, f"{model.path} ({model.architecture})", Qt.ItemDataRole.ToolTipRole
                )
        finally:
            self.combo.blockSignals(False)
        if chosen:
            index = self.combo.findData(chosen, MODEL_ROLE)
            self.combo.setCurrentIndex(index if index >= 0 else 0)

    def chosen(self) -> store.TrainedModel | None:
        """The chosen trained model, or None for a built-in method (or a model gone since)."""
        path = self.combo.currentData(MODEL_ROLE)
        return next((model for model in store.trained_models() if model.path == path), None) if path else None

    def training_gsd(self) -> float | None:
        """The chosen model's training GSD in metres per pixel: the dock's default working resolution."""
        model = self.chosen()
        return model.training_gsd if model is not None else None

    def plan_parameters(self) -> dict:
        """The segment algorithm's parameters for the chosen entry: {} for a built-in method."""
        chosen = self.combo.currentData(MODEL_ROLE)
        if not chosen:
            return {}
        paths = [model.path for model in store.trained_models()]
        if chosen not in paths:
            raise CaptureError(f"the trained model {chosen} is gone: choose another method or train again")
        return {"METHOD": 0, "AEROSEG_MODEL": 1 + paths.index(chosen)}

    def close(self) -> None:
        if self.refresh in store.listeners:
            store.listeners.remove(self.refresh)
