"""Each method's defaults in the panel and in Processing: the plugin's table agrees with the engine's
method specs, and choosing a method in the dock brings its resolution and threshold (a class's Min the
user typed stays; the panel says what it means)."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_rasters import write_geotiff
from qgis.core import QgsProject, QgsRasterLayer

from engine.methods.catalogue import SPECS
from rs_ovseg_qgis.core.capture import CaptureResult
from rs_ovseg_qgis.core.method_defaults import DEFAULTS, FIDELITIES
from rs_ovseg_qgis.core.presets import load_preset
from rs_ovseg_qgis.core.segment_request import SegmentJob
from rs_ovseg_qgis.core.vocabulary import Vocabulary
from rs_ovseg_qgis.definitions import METHODS
from rs_ovseg_qgis.ui.dock import RsOvsegDock
from rs_ovseg_qgis.ui.vocabulary_model import THRESHOLD


def test_the_plugin_mirrors_the_engine_method_specs():
    from engine.methods.spec import FIDELITIES as ENGINE_FIDELITIES

    # Every method the panel offers (definitions.METHODS, under the engine's labels) has its defaults in
    # rs_ovseg_qgis/core/method_defaults.py, equal to the engine's.
    offered = [name for name, _ in METHODS]
    assert set(offered) <= set(DEFAULTS), "add the method's defaults to rs_ovseg_qgis/core/method_defaults.py"
    assert set(DEFAULTS) <= set(SPECS)
    for name, ours in DEFAULTS.items():
        spec = SPECS[name]
        assert ours.gsd_factor == pytest.approx(spec.gsd_factor), name
        assert (ours.threshold_kind, ours.threshold) == (spec.threshold.kind, spec.threshold.default), name
    assert {name: label for name, label in METHODS} == {name: SPECS[name].label for name, _ in METHODS}
    assert tuple(value for value, _ in FIDELITIES) == ENGINE_FIDELITIES


@pytest.fixture
def dock(qgis_iface, qgis_new_project, tmp_path):
    widget = RsOvsegDock(qgis_iface.mainWindow(), qgis_iface)
    widget.output_widget.setFilePath(str(tmp_path / "out"))
    yield widget
    widget.shutdown()
    widget.deleteLater()


def test_choosing_a_method_brings_its_defaults(dock, tmp_path):
    path = write_geotiff(tmp_path / "half_metre.tif", np.zeros((3, 64, 80), np.uint8), pixel=0.5)
    layer = QgsRasterLayer(str(path), "half metre", "gdal")
    QgsProject.instance().addMapLayer(layer)
    dock.layer_combo.setLayer(layer)
    dock.vocabulary_editor.set_vocabulary(load_preset("OpenEarthMap"))
    dock.vocabulary_editor.model.setData(dock.vocabulary_editor.model.index(2, THRESHOLD), "0.25")
    assert dock.gsd_spin.value() == pytest.approx(round(0.5 * 1000 / 448, 2))  # SegEarth-OV's rule
    assert "0.1 (the vocabulary's)" in dock.advanced_section.threshold_note.text()
    assert "probability" in dock.advanced_section.threshold_note.text()
    dock.threshold_spin.setValue(0.3)  # a SegEarth-OV probability ...

    dock.method_combo.setCurrentIndex(dock.method_combo.findData("reseg-clip"))
    assert dock.gsd_spin.value() == pytest.approx(0.5)  # ReSeg-CLIP works at native resolution
    assert dock.threshold_spin.value() == 0.0  # ... means nothing to ReSeg-CLIP: back to its default
    note = dock.advanced_section.threshold_note.text()
    assert "Default: none" in note and "cosine margin" in note
    model = dock.vocabulary_editor.model
    assert model.vocabulary().classes[2].threshold == 0.25  # the Min the user typed stays
    assert "cosine margin" in model.data(model.index(2, THRESHOLD), role=_tooltip_role())
    parameters = dock.build_plan().parameters
    assert "THRESHOLD" not in parameters and parameters["RESOLUTION"] == pytest.approx(0.5)

    dock.advanced_section.fidelity_combo.setCurrentIndex(1)
    assert FIDELITIES[dock.build_plan().parameters["FIDELITY"]][0] == "reference"
    dock.method_combo.setCurrentIndex(dock.method_combo.findData("segearth-ov"))
    assert dock.gsd_spin.value() == pytest.approx(round(0.5 * 1000 / 448, 2))
    assert "probability" in dock.advanced_section.threshold_note.text()


def test_the_request_leaves_the_threshold_to_the_engine_unless_set():
    vocabulary = load_preset("OpenEarthMap")
    capture = CaptureResult("in.tif", None, None, None, rendered=False)
    job = SegmentJob(capture, vocabulary, out=__file__, method="reseg-clip", fidelity="reference")
    args = job.engine_args()
    assert "threshold" not in args and args["fidelity"] == "reference"
    assert args["vocabulary"]["method_thresholds"] == {"segearth-ov": 0.1}  # the engine picks per method
    vocabulary.threshold = 0.02  # Processing's THRESHOLD: this run, whatever the method
    assert SegmentJob(capture, vocabulary, out=__file__).engine_args()["threshold"] == 0.02
    assert Vocabulary.from_dict(vocabulary.to_dict()).threshold is None  # a run setting, not saved


def _tooltip_role():
    from qgis.PyQt.QtCore import Qt

    return Qt.ItemDataRole.ToolTipRole


def test_processing_leaves_the_resolution_to_the_method_when_it_is_0(qgis_new_project, tmp_path):
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    from rs_ovseg_qgis.processing.segment_algorithm import SegmentAlgorithm

    path = write_geotiff(tmp_path / "half_metre.tif", np.zeros((3, 32, 32), np.uint8), pixel=0.5)
    layer = QgsRasterLayer(str(path), "half metre", "gdal")
    QgsProject.instance().addMapLayer(layer)
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    context.setProject(QgsProject.instance())
    for resolution, sent in ((0.0, None), (2.0, 2.0)):
        algorithm = SegmentAlgorithm().create()
        parameters = {
            "INPUT": layer,
            "CLASSES": "road",
            "RESOLUTION": resolution,
            "OUTPUT": str(tmp_path / "o.tif"),
        }
        assert algorithm.prepareAlgorithm(parameters, context, feedback)
        assert algorithm._job_capture.gsd == sent  # None: the engine applies the chosen method's rule
