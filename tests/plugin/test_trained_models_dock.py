"""Trained AerOSeg models in the dock's method choice: listed as "AerOSeg — NAME, trained on …" once
trained, chosen like a method (its defaults shown), and sent to rs_ovseg:segment as AEROSEG_MODEL."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures_engine import KOELN, needs_koeln, random_weight_engine  # noqa: F401
from osgeo import gdal
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsSettings
from qgis.PyQt.QtCore import QCoreApplication

from rs_ovseg_qgis.core.trained_models import SETTING_TRAINED_MODELS, remember_model
from rs_ovseg_qgis.processing.provider import RsOvsegProvider
from rs_ovseg_qgis.ui.dock import RsOvsegDock
from rs_ovseg_qgis.ui.trained_method_items import MODEL_ROLE

pytestmark = needs_koeln


@pytest.fixture
def dock(qgis_iface, qgis_new_project, tmp_path):
    QgsSettings().remove(SETTING_TRAINED_MODELS)
    widget = RsOvsegDock(qgis_iface.mainWindow(), qgis_iface)
    widget.output_widget.setFilePath(str(tmp_path / "out"))
    yield widget
    widget.shutdown()
    widget.deleteLater()
    QgsSettings().remove(SETTING_TRAINED_MODELS)


def train_tiny(engine, folder) -> str:
    patch = folder / "patch.vrt"
    gdal.Translate(str(patch), str(KOELN), format="VRT", srcWin=[460, 540, 128, 128])
    labels = np.zeros((128, 128), dtype=np.uint8)
    labels[10:60, 10:60], labels[80:120, 80:120] = 1, 2
    raster = gdal.Translate(str(folder / "labels.tif"), str(patch), bandList=[1], format="GTiff")
    raster.GetRasterBand(1).WriteArray(labels)
    raster = None
    out = folder / "roofs.safetensors"
    engine.request(
        "train",
        {
            "images": [str(patch)],
            "labels": str(folder / "labels.tif"),
            "classes": ["solar panel", "field"],
            "out": str(out),
            "architecture": "tiny",
            "steps": 2,
            "batch_size": 1,
            "gsd": 1.0,  # the patch is 0.5 m: the dock must default to the model's 1 m, not the layer's
        },
    )
    return str(patch), str(out)


def test_a_trained_model_becomes_a_method_choice(dock, random_weight_engine, tmp_path):  # noqa: F811
    fixed = dock.method_combo.count()
    patch, model = train_tiny(random_weight_engine, tmp_path)
    assert dock.method_combo.count() == fixed  # not remembered yet: only Processing's train does that
    remember_model(model)
    assert dock.method_combo.count() == fixed + 1
    index = dock.method_combo.findData(str(tmp_path.resolve() / "roofs.safetensors"), MODEL_ROLE)
    assert dock.method_combo.itemText(index) == "AerOSeg — roofs, trained on solar panel, field"
    layer = QgsRasterLayer(patch, "patch", "gdal")
    QgsProject.instance().addMapLayer(layer)
    dock.layer_combo.setLayer(layer)
    dock.method_combo.setCurrentIndex(index)
    assert dock.method_defaults().name == "aeroseg"
    assert dock.gsd_spin.value() == pytest.approx(1.0)  # the training GSD, not the layer's native 0.5 m
    parameters = dock.build_plan().parameters
    assert parameters["AEROSEG_MODEL"] == 1 and parameters["METHOD"] == 0
    # The panel's estimate counts the model's own windows: at 0.1 m the 64 m patch is 640 px, 4 × 4
    # blocks of 214 px (its 128-px window + stride 86, global view) where the spec's 384 gives 2 × 2.
    dock.extent_widget.setOutputExtentFromUser(layer.extent(), layer.crs())
    dock.last_estimate = None
    dock.gsd_spin.setValue(0.1)
    end = time.monotonic() + 60
    while dock.last_estimate is None or list(dock.last_estimate["working_size"]) != [640, 640]:
        assert time.monotonic() < end, f"no estimate: {dock.model_label.text()} {dock.time_label.text()}"
        QCoreApplication.processEvents()
        time.sleep(0.02)
    assert dock.last_estimate["crop_evaluations"] == 16
    assert "16 windows of the model" in dock.model_label.text()
    remember_model(model)  # listed again (refreshed): the choice stays on the model
    assert dock.method_combo.currentData(MODEL_ROLE) == str(tmp_path.resolve() / "roofs.safetensors")
    dock.method_combo.setCurrentIndex(dock.method_combo.findData("reseg-clip"))  # its default: native GSD
    assert dock.gsd_spin.value() == pytest.approx(0.5)
    assert "AEROSEG_MODEL" not in dock.build_plan().parameters


def test_a_model_trained_after_the_provider_loaded_segments_from_the_dock(
    qgis_iface,
    qgis_new_project,
    qgis_processing,
    random_weight_engine,  # noqa: F811
    tmp_path,
):
    """The registered rs_ovseg:segment lists the models of the moment it was made; a run from the dock
    with a model trained later must still be accepted and segment with that model."""
    QgsSettings().remove(SETTING_TRAINED_MODELS)
    registry = QgsApplication.processingRegistry()
    provider = RsOvsegProvider()
    registry.addProvider(provider)  # before the model exists, as when QGIS starts
    dock = RsOvsegDock(qgis_iface.mainWindow(), qgis_iface)
    try:
        patch, model = train_tiny(random_weight_engine, tmp_path)
        remember_model(model)
        layer = QgsRasterLayer(patch, "patch", "gdal")
        QgsProject.instance().addMapLayer(layer)
        dock.layer_combo.setLayer(layer)
        dock.extent_widget.setOutputExtentFromUser(layer.extent(), layer.crs())
        dock.output_widget.setFilePath(str(tmp_path / "out"))
        dock.method_combo.setCurrentIndex(dock.method_combo.findData(str(Path(model).resolve()), MODEL_ROLE))
        dock.run_button.click()
        end = time.monotonic() + 180
        while dock.run is None or dock.run.status is None:
            assert time.monotonic() < end, "the run did not finish"
            QCoreApplication.processEvents()
            time.sleep(0.02)
        assert dock.run.status == "ok", dock.status_label.text()
        sidecars = [p for p in (tmp_path / "out").rglob("*.json") if not p.name.endswith(".aeroseg.json")]
        methods = [json.loads(p.read_text()).get("method", {}) for p in sidecars]
        assert any(m.get("method") == "aeroseg" and m["model"]["name"] == "roofs" for m in methods)
    finally:
        dock.shutdown()
        dock.deleteLater()
        registry.removeProvider(provider)
        QgsSettings().remove(SETTING_TRAINED_MODELS)
