"""SegEarth-OV3 in the plugin: offered in the dock and in Processing with its presets (agreeing with the
engine's), the CPU note, and its preset reaching the engine's request through the real worker (tiny
random-weight SAM 3)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures_engine import random_weight_engine  # noqa: F401
from fixtures_rasters import write_geotiff
from qgis.core import QgsProject, QgsRasterLayer

from rs_ovseg_qgis.definitions import DEVICES, METHODS, SAM3_PRESETS
from rs_ovseg_qgis.ui.dock import RsOvsegDock

sam3_settings = pytest.importorskip("engine.methods.segearth_ov3.settings")


def test_presets_mirror_the_engine():
    assert [name for name, _ in SAM3_PRESETS] == list(sam3_settings.PRESETS)
    for name, label in SAM3_PRESETS:
        preset = sam3_settings.PRESETS[name]
        assert f"{preset['crop_size']} px" in label and f"{preset['probability_threshold']:g})" in label
    assert "segearth-ov3" in [name for name, _ in METHODS]


@pytest.fixture
def dock(qgis_iface, qgis_new_project, tmp_path):
    widget = RsOvsegDock(qgis_iface.mainWindow(), qgis_iface)
    widget.output_widget.setFilePath(str(tmp_path / "out"))
    yield widget
    widget.shutdown()
    widget.deleteLater()


def device_index(name: str) -> int:
    return [value for value, _ in DEVICES].index(name)


def test_the_dock_offers_segearth_ov3_with_its_preset_and_cpu_note(dock, tmp_path):
    path = write_geotiff(tmp_path / "half_metre.tif", np.zeros((3, 64, 80), np.uint8), pixel=0.5)
    layer = QgsRasterLayer(str(path), "half metre", "gdal")
    QgsProject.instance().addMapLayer(layer)
    dock.layer_combo.setLayer(layer)
    row = dock.sam3_row
    assert row.preset_combo.isHidden()  # SegEarth-OV is the default method
    assert "SAM3_PRESET" not in dock.build_plan().parameters

    dock.method_combo.setCurrentIndex(dock.method_combo.findData("segearth-ov3"))
    dock.device_combo.setCurrentIndex(device_index("cpu"))
    assert not row.preset_combo.isHidden() and not row.cpu_note.isHidden()
    assert "GPU" in row.cpu_note.text()
    assert dock.gsd_spin.value() == pytest.approx(0.5)  # the reference works at native resolution
    assert "SAM 3" in dock.advanced_section.threshold_note.text()
    row.preset_combo.setCurrentIndex(row.preset_combo.findData("loveda"))
    parameters = dock.build_plan().parameters
    assert SAM3_PRESETS[parameters["SAM3_PRESET"]][0] == "loveda"
    assert METHODS[parameters["METHOD"]][0] == "segearth-ov3"

    dock.device_combo.setCurrentIndex(device_index("cuda"))
    assert row.cpu_note.isHidden()
    row.update("cpu")  # "auto" that the engine resolved to the CPU
    dock.device_combo.setCurrentIndex(device_index("auto"))
    row.update("cpu")
    assert not row.cpu_note.isHidden()
    row.update("cuda")
    assert row.cpu_note.isHidden()


def test_processing_sends_the_preset_to_the_engine(provider, random_weight_engine, tmp_path):  # noqa: F811
    import processing

    bands = np.random.default_rng(0).integers(0, 256, (3, 96, 128), dtype=np.uint8)
    path = write_geotiff(tmp_path / "in.tif", bands, pixel=1.0)
    out = tmp_path / "classes.tif"
    result = processing.run(
        "rs_ovseg:segment",
        {
            "INPUT": str(path),
            "CLASSES": "building,roof\ntree\nwater",
            "METHOD": [name for name, _ in METHODS].index("segearth-ov3"),
            "DEVICE": device_index("cpu"),
            "RESOLUTION": 0.0,
            "SAM3_PRESET": [name for name, _ in SAM3_PRESETS].index("loveda"),
            "ENGINE_OPTIONS": json.dumps({"sam3_config": "tiny", "dtype": "float32"}),
            "OUTPUT": str(out),
        },
    )
    sidecar = json.loads(Path(result["SIDECAR"]).read_text(encoding="utf-8"))
    assert sidecar["method"]["method"] == "segearth-ov3"
    assert sidecar["method"]["settings"]["preset"] == "loveda"
    assert sidecar["settings"]["threshold"] == 0.5 and sidecar["settings"]["working_gsd_m"] == 1.0
    layer = QgsRasterLayer(str(out), "classes", "gdal")
    assert layer.isValid() and (layer.width(), layer.height()) == (128, 96)


@pytest.fixture
def engine_without_weights(tmp_path):
    """The shared worker restarted with an empty weights cache and downloads disabled."""
    from rs_ovseg_qgis.core import engine_service

    saved = {
        k: os.environ.get(k) for k in ("RS_OVSEG_HOME", "RS_OVSEG_NO_DOWNLOAD", "RS_OVSEG_RANDOM_WEIGHTS")
    }
    os.environ.update({"RS_OVSEG_HOME": str(tmp_path / "home"), "RS_OVSEG_NO_DOWNLOAD": "1"})
    os.environ.pop("RS_OVSEG_RANDOM_WEIGHTS", None)
    engine_service.shutdown()
    yield engine_service.shared_client()
    engine_service.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def wait_for(condition, seconds: float = 60.0) -> None:
    from qgis.PyQt.QtCore import QCoreApplication

    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.02)
    assert condition()


def test_missing_weights_are_offered_and_the_download_reports_back(dock, engine_without_weights, tmp_path):
    path = write_geotiff(tmp_path / "in.tif", np.zeros((3, 64, 80), np.uint8), pixel=0.5)
    args = {"input": str(path), "method": "segearth-ov3", "classes": ["road"]}
    estimate = engine_without_weights.request("estimate", args)
    dock.method_combo.setCurrentIndex(dock.method_combo.findData("segearth-ov3"))
    row = dock.sam3_row
    row.show_missing(estimate["missing_weights"])
    assert not row.download_button.isHidden() and "SAM License" in row.weights_label.text()
    assert "request access at https://huggingface.co/facebook/sam3" in row.licence_text(row.missing[0])
    job = row.start_download("sam3")
    wait_for(lambda: not job.is_running() and row.download_button.isEnabled())
    assert "downloads are disabled" in row.weights_label.text()
    dock.method_combo.setCurrentIndex(dock.method_combo.findData("segearth-ov"))
    assert row.download_button.isHidden() and row.weights_label.isHidden()
