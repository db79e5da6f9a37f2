"""The dock's "Assess against reference…" with the real engine worker: after a run it proposes the run's
class raster, runs the assessment off the main thread and shows overall accuracy, mIoU, per-class IoU and
the figure; the report's path stays with the run's group. A bad reference says why and adds nothing."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_assess import (
    MAP_CLASSES,
    ORIGIN,
    PIXEL_M,
    RECTANGLES_FIELD,
    write_class_raster,
    write_label_raster,
    write_mapping,
    write_polygons,
)
from fixtures_engine import TINY_ENGINE_OPTIONS_JSON, random_weight_engine  # noqa: F401
from fixtures_rasters import write_geotiff
from osgeo import gdal
from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtWidgets import QDialogButtonBox
from qt_wait import wait_for

from rs_ovseg_qgis.core.assessment import REPORT_PROPERTY, percent, read_report
from rs_ovseg_qgis.core.vocabulary import Vocabulary
from rs_ovseg_qgis.processing.provider import RsOvsegProvider
from rs_ovseg_qgis.ui.assess_dialog import AssessDialog
from rs_ovseg_qgis.ui.dock import RsOvsegDock

IMAGE_SHAPE = (48, 64)  # rows, columns at 0.5 m
REFERENCE_CODES = {"building": 10, "road": 20, "tree": 30}


@pytest.fixture
def dock(qgis_iface, qgis_new_project, qgis_processing, tmp_path):
    registry = QgsApplication.processingRegistry()
    provider = RsOvsegProvider()
    registry.addProvider(provider)
    widget = RsOvsegDock(qgis_iface.mainWindow(), qgis_iface)
    widget.output_widget.setFilePath(str(tmp_path / "out"))
    yield widget
    for run in (widget.run, widget.assess_section.run):
        if run is not None and run.is_running():
            run.cancel()
            wait_for(lambda run=run: not run.is_running())
    widget.shutdown()
    widget.deleteLater()
    registry.removeProvider(provider)


def run_segment(dock, tmp_path) -> QgsRasterLayer:
    """A real run of the dock on a small synthetic image; returns the run's class raster layer."""
    image = np.random.default_rng(3).integers(0, 256, (3, *IMAGE_SHAPE), dtype=np.uint8)
    layer = QgsRasterLayer(str(write_geotiff(tmp_path / "image.tif", image, origin=ORIGIN)), "image", "gdal")
    QgsProject.instance().addMapLayer(layer)
    dock.layer_combo.setLayer(layer)
    dock.vocabulary_editor.set_vocabulary(Vocabulary.from_lines("\n".join(MAP_CLASSES), "town"))
    dock.engine_options_edit.setText(TINY_ENGINE_OPTIONS_JSON)
    dock.extent_widget.setOutputExtentFromUser(layer.extent(), layer.crs())
    dock.gsd_spin.setValue(PIXEL_M)
    dock.run_button.click()
    wait_for(lambda: dock.run.status is not None)
    assert dock.run.status == "ok", dock.status_label.text()
    return dock.assess_section.map_layer


def reference_for(classes_path, tmp_path):
    """Reference codes that agree with the map on about 60 % of the pixels."""
    dataset = gdal.Open(str(classes_path))
    labels = dataset.GetRasterBand(1).ReadAsArray().astype(np.int64)
    dataset = None
    rng = np.random.default_rng(5)
    truth = np.where(rng.random(labels.shape) < 0.6, labels, rng.integers(1, 4, labels.shape))
    truth = np.where(truth == 0, 1, truth)  # every reference pixel has a class
    codes = np.array([0, *[REFERENCE_CODES[name] for name in MAP_CLASSES]])[truth]
    return write_label_raster(tmp_path / "truth.tif", codes)


def test_after_a_run_the_dock_assesses_and_shows_the_figures(
    dock,
    random_weight_engine,  # noqa: F811 (the fixture, imported)
    tmp_path,
):
    section = dock.assess_section
    dock.setFloating(True)  # a window of its own: shown although the test's main window is not
    dock.show()  # (a visible group box is the one that re-shows its hidden children when expanded)
    assert section.isCollapsed() and section.isVisible()
    classes = run_segment(dock, tmp_path)
    assert classes is not None and not section.isCollapsed()  # offered after the run
    assert section.progress_bar.isHidden() and section.class_table.isHidden()  # nothing to show yet
    reference = reference_for(classes.source(), tmp_path)
    mapping = write_mapping(tmp_path / "mapping.json", REFERENCE_CODES)
    section.assess_button.click()
    dialog = section.dialog
    assert dialog.map_combo.currentLayer() is classes
    dialog.reference_file.setFilePath(str(reference))
    dialog.mapping_file.setFilePath(str(mapping))
    assert not dialog.field_combo.isEnabled()  # a raster reference has no class field
    layers_before = set(QgsProject.instance().mapLayers())
    dialog.button_box.button(QDialogButtonBox.StandardButton.Ok).click()
    assert not section.assess_button.isEnabled() and section.cancel_button.isEnabled()
    wait_for(lambda: section.run.status is not None)
    assert section.run.status == "ok", section.summary_label.text()
    report_path = section.run.report_path
    report = read_report(report_path)
    text = section.summary_label.text()
    assert f"Overall accuracy {percent(report['overall_accuracy'])}" in text
    assert f"mIoU {percent(report['miou'])}" in text
    assert dock.last_message == (
        f"assessed {classes.name()}: overall accuracy {percent(report['overall_accuracy'])}, "
        f"mIoU {percent(report['miou'])}",
        Qgis.Success,
    )
    table = section.class_table
    shown = {table.item(row, 0).text(): table.item(row, 1).text() for row in range(table.rowCount())}
    assert shown == {name: percent(report["per_class"][name]["iou"]) for name in report["classes"]}
    assert not section.figure_label.isHidden() and not section.figure_label.pixmap().isNull()
    # Kept with the run: the report's path on the run's group, the confusion matrix table inside it.
    group = dock.run.group
    assert group.customProperty(REPORT_PROPERTY) == str(section.run.report_path)
    added = set(QgsProject.instance().mapLayers()) - layers_before
    assert len(added) == 1
    matrix = QgsProject.instance().mapLayer(added.pop())
    assert isinstance(matrix, QgsVectorLayer) and group.findLayer(matrix.id()) is not None
    assert matrix.featureCount() == len(report["classes"])
    # The next time the run is offered (e.g. the project reopened), its report comes back.
    section.summary_label.clear()
    section.offer_run(group, classes.source())
    assert f"mIoU {percent(report['miou'])}" in section.summary_label.text()
    # A later assessment that fails does not leave the earlier figures beside its message.
    far = write_label_raster(tmp_path / "far.tif", np.ones((8, 8)), origin=(ORIGIN[0] + 9e4, ORIGIN[1]))
    section.start({"INPUT": classes, "REFERENCE_RASTER": str(far)})
    wait_for(lambda: section.run.status is not None)
    assert section.run.status == "failed" and "does not overlap" in section.summary_label.text()
    assert section.class_table.isHidden() and section.figure_label.isHidden()
    assert group.customProperty(REPORT_PROPERTY) == str(report_path)  # the kept report stays


def test_a_reference_that_does_not_overlap_says_why_and_adds_nothing(
    dock,
    random_weight_engine,  # noqa: F811 (the fixture, imported)
    tmp_path,
):
    labels = np.random.default_rng(1).integers(1, 4, (20, 30))
    classes_path = write_class_raster(tmp_path / "map.tif", labels)
    classes = QgsRasterLayer(str(classes_path), "map", "gdal")
    project = QgsProject.instance()
    project.addMapLayer(classes)
    far = write_label_raster(tmp_path / "far.tif", labels, origin=(ORIGIN[0] + 50_000, ORIGIN[1]))
    layers_before = set(project.mapLayers())
    section = dock.assess_section
    section.start({"INPUT": classes, "REFERENCE_RASTER": str(far)})
    wait_for(lambda: section.run.status is not None)
    assert section.run.status == "failed"
    assert "overlap" in section.summary_label.text().lower()
    assert dock.last_message[1] == Qgis.Critical and "overlap" in dock.last_message[0].lower()
    assert set(project.mapLayers()) == layers_before
    assert not list((tmp_path / "out").glob("*_confusion.gpkg")) and not list(
        (tmp_path / "out").glob("*.json")
    )
    assert section.assess_button.isEnabled() and section.class_table.isHidden()


def test_the_dialog_asks_for_a_class_field_for_polygons(qgis_new_project, tmp_path):
    classes = QgsRasterLayer(
        str(write_class_raster(tmp_path / "map.tif", np.ones((10, 10), dtype=np.uint8))), "map", "gdal"
    )
    QgsProject.instance().addMapLayer(classes)
    polygons = write_polygons(tmp_path / "ref.gpkg", [((0, 0, 5, 5), "road")], RECTANGLES_FIELD)
    dialog = AssessDialog(None, classes)
    with pytest.raises(ValueError, match="choose the reference"):
        dialog.parameters()
    dialog.reference_file.setFilePath(str(polygons))
    assert dialog.field_combo.isEnabled() and dialog.field_combo.currentField() == RECTANGLES_FIELD
    parameters = dialog.parameters()
    assert parameters["REFERENCE_POLYGONS"] == str(polygons)
    assert parameters["REFERENCE_FIELD"] == RECTANGLES_FIELD and "IGNORE" not in parameters
    dialog.field_combo.setField("")
    with pytest.raises(ValueError, match="choose the class field"):
        dialog.parameters()
    dialog.reference_file.setFilePath(str(tmp_path / "mapping.json"))  # not a layer at all
    assert "neither a raster nor polygons" in dialog.message_label.text()
    dialog.deleteLater()


def test_an_assessment_shows_progress_and_can_be_cancelled(
    dock,
    random_weight_engine,  # noqa: F811 (the fixture, imported)
    tmp_path,
):
    # Large enough (16 Mpx, about 1.5 s in the engine) that the cancel arrives mid-way.
    labels = np.random.default_rng(2).integers(1, 4, (4000, 4000)).astype(np.uint8)
    classes = QgsRasterLayer(str(write_class_raster(tmp_path / "map.tif", labels)), "map", "gdal")
    project = QgsProject.instance()
    project.addMapLayer(classes)
    reference = write_label_raster(tmp_path / "truth.tif", labels)
    layers_before = set(project.mapLayers())
    section = dock.assess_section
    section.start({"INPUT": classes, "REFERENCE_RASTER": str(reference)})
    seen = []

    def cancel_once_it_moves(percent: float, _text: str) -> None:
        seen.append(percent)
        section.cancel()

    section.run.progress.connect(cancel_once_it_moves)
    wait_for(lambda: section.run.status is not None)
    assert seen and section.run.status == "cancelled", section.summary_label.text()
    assert "cancelled" in section.summary_label.text()
    assert set(project.mapLayers()) == layers_before
    assert not list((tmp_path / "out").glob("*"))  # no report, figure or table
    assert section.assess_button.isEnabled() and not section.cancel_button.isEnabled()
