"""The dock's widgets: vocabulary editing saved with the project, size estimate, and runs end to end
with the real engine worker (tiny random-weight CLIP): success, cancel, and "what the map shows"."""

from __future__ import annotations

import pytest
from fixtures_engine import KOELN, TINY_ENGINE_OPTIONS_JSON, needs_koeln, random_weight_engine  # noqa: F401
from qgis.core import QgsApplication, QgsPalettedRasterRenderer, QgsProject, QgsRasterLayer, QgsRectangle
from qgis.PyQt.QtCore import QCoreApplication
from qt_wait import wait_for

from rs_ovseg_qgis.core.estimate import duration_text
from rs_ovseg_qgis.core.vocabulary import Vocabulary
from rs_ovseg_qgis.definitions import PROJECT_SCOPE, PROJECT_VOCABULARY, SOURCE_MAP
from rs_ovseg_qgis.processing.provider import RsOvsegProvider
from rs_ovseg_qgis.ui.dock import RsOvsegDock


@pytest.fixture
def dock(qgis_iface, qgis_new_project, qgis_processing, tmp_path):
    registry = QgsApplication.processingRegistry()
    provider = RsOvsegProvider()
    registry.addProvider(provider)
    widget = RsOvsegDock(qgis_iface.mainWindow(), qgis_iface)
    widget.output_widget.setFilePath(str(tmp_path / "out"))
    yield widget
    if widget.run is not None and widget.run.is_running():
        widget.cancel_run()
        wait_for(lambda: not widget.run.is_running())
    widget.shutdown()
    widget.deleteLater()
    registry.removeProvider(provider)


def add_koeln() -> QgsRasterLayer:
    layer = QgsRasterLayer(str(KOELN), "koeln", "gdal")
    QgsProject.instance().addMapLayer(layer)
    return layer


def tiny_vocabulary(dock) -> None:
    dock.vocabulary_editor.set_vocabulary(Vocabulary.from_lines("building,roof\nroad\ntree", "town"))
    dock.engine_options_edit.setText(TINY_ENGINE_OPTIONS_JSON)


def test_the_table_edits_and_the_project_keeps_the_vocabulary(dock, tmp_path):
    editor = dock.vocabulary_editor
    editor.set_vocabulary(Vocabulary.from_lines("water\nroad", "mine"))
    model = editor.model
    model.setData(model.index(0, 1), "river, lake")
    model.setData(model.index(1, 2), "#123456")
    assert not model.setData(model.index(1, 3), "7")  # thresholds are 0..1
    model.setData(model.index(1, 3), "0.25")
    editor.paste("tree,forest\n\nbuilding")
    editor.table.selectRow(3)
    editor.move(-1)
    assert editor.vocabulary().class_names() == ["water", "road", "building", "tree"]
    assert dock.vocabulary_box.title() == "Vocabulary: mine (4 classes)"
    editor.table.selectRow(0)
    editor.remove_selected()
    assert editor.vocabulary().class_names() == ["road", "building", "tree"]
    assert (
        editor.vocabulary().classes[0].color == "#123456" and editor.vocabulary().classes[0].threshold == 0.25
    )
    # Saved with the project, restored when the project is read again.
    path = tmp_path / "p.qgz"
    project = QgsProject.instance()
    stored, _ = project.readEntry(PROJECT_SCOPE, PROJECT_VOCABULARY, "")
    assert Vocabulary.from_json(stored).class_names() == ["road", "building", "tree"]
    assert project.write(str(path))
    editor.use_selected_preset()  # something else in the table...
    assert editor.vocabulary().class_names() != ["road", "building", "tree"]
    project.read(str(path))  # ...and the project's vocabulary comes back
    assert editor.vocabulary().class_names() == ["road", "building", "tree"]
    # Export and import round-trip.
    editor.export_json(str(tmp_path / "v.json"))
    editor.set_vocabulary(Vocabulary.from_lines("x"))
    editor.import_json(str(tmp_path / "v.json"))
    assert editor.vocabulary().to_dict() == Vocabulary.load(tmp_path / "v.json").to_dict()


@needs_koeln
def test_the_panel_tells_the_ground_and_the_models_pixels_at_once(dock):
    layer = add_koeln()
    dock.layer_combo.setLayer(layer)
    assert dock.gsd_spin.value() == pytest.approx(round(0.5 * 1000 / 448, 2))
    dock.extent_widget.setOutputExtentFromUser(
        QgsRectangle(346_000, 5_647_600, 346_400, 5_650_000), layer.crs()
    )
    dock.gsd_spin.setValue(2.0)
    assert dock.size_label.text() == "400 m × 2.4 km (96.0 ha)"  # before the engine answers
    assert dock.model_label.text() == "200 × 1,200 px"  # 400 m and 2.4 km at 2 m per pixel


@needs_koeln
def test_run_adds_a_styled_group_above_the_input(
    dock,
    random_weight_engine,  # noqa: F811
):
    layer = add_koeln()
    dock.layer_combo.setLayer(layer)
    tiny_vocabulary(dock)
    dock.polygons_check.setChecked(True)
    dock.extent_widget.setOutputExtentFromUser(
        QgsRectangle(346_000, 5_647_700, 346_300, 5_648_000), layer.crs()
    )
    dock.gsd_spin.setValue(4.0)
    progress = []
    dock.progress_bar.valueChanged.connect(progress.append)
    dock.run_button.click()
    assert dock.cancel_button.isEnabled() and not dock.run_button.isEnabled()
    wait_for(lambda: dock.run.status is not None)
    assert dock.run.status == "ok", dock.status_label.text()
    assert progress and max(progress) == 100
    root = QgsProject.instance().layerTreeRoot()
    assert root.children()[0].name().startswith("town ")  # the group, above the input layer
    assert root.children()[1].layer() == layer
    group_layers = [node.layer() for node in root.children()[0].findLayers()]
    classes = next(lyr for lyr in group_layers if isinstance(lyr, QgsRasterLayer))
    assert isinstance(classes.renderer(), QgsPalettedRasterRenderer)
    assert [c.label for c in classes.renderer().classes()] == ["building", "road", "tree"]
    assert len(group_layers) == 2  # classes and polygons
    assert classes.width() == 600  # 300 m of the input's 0.5 m grid


@needs_koeln
def test_cancel_leaves_the_project_unchanged(
    dock,
    random_weight_engine,  # noqa: F811
    tmp_path,
):
    layer = add_koeln()
    dock.layer_combo.setLayer(layer)
    tiny_vocabulary(dock)
    dock.gsd_spin.setValue(0.5)  # the whole tile at full resolution: long enough to cancel
    before = (list(QgsProject.instance().mapLayers()), len(QgsProject.instance().layerTreeRoot().children()))
    dock.run_button.click()
    wait_for(lambda: dock.progress_bar.value() > 0 or dock.run.status is not None)
    dock.cancel_button.click()
    wait_for(lambda: dock.run.status is not None)
    assert dock.run.status == "cancelled"
    after = (list(QgsProject.instance().mapLayers()), len(QgsProject.instance().layerTreeRoot().children()))
    assert after == before
    assert not list((tmp_path / "out").glob("*.tif"))
    assert dock.run_button.isEnabled()


@needs_koeln
def test_what_the_map_shows_is_rendered_and_segmented(
    dock,
    random_weight_engine,  # noqa: F811
):
    layer = add_koeln()
    project = QgsProject.instance()
    project.setCrs(layer.crs())
    tiny_vocabulary(dock)
    dock.source_combo.setCurrentIndex(SOURCE_MAP)
    dock.extent_widget.setOutputCrs(layer.crs())
    dock.extent_widget.setOutputExtentFromUser(
        QgsRectangle(346_000, 5_647_800, 346_200, 5_648_000), layer.crs()
    )
    dock.gsd_spin.setValue(2.0)
    dock.run_button.click()
    wait_for(lambda: dock.run.status is not None)
    assert dock.run.status == "ok", dock.status_label.text()
    group = project.layerTreeRoot().children()[0]
    classes = group.findLayers()[0].layer()
    assert (classes.width(), classes.height()) == (100, 100)  # rendered at 2 m per pixel
    assert classes.extent().toRectF().getCoords() == pytest.approx((346_000, 5_647_800, 346_200, 5_648_000))


def test_errors_go_to_the_message_bar(dock):
    dock.vocabulary_editor.set_vocabulary(Vocabulary())
    dock.run_button.click()
    assert "no classes" in dock.last_message[0]
    assert dock.run is None


def sliding_windows(size: int, crop: int = 224, stride: int = 112) -> int:
    """Windows of a sliding window along one axis, the last one flush with the end (obvious form)."""
    starts, position = [], 0
    while True:
        starts.append(min(position, max(size - crop, 0)))
        if position + crop >= size:
            return len(set(starts))
        position += stride


@needs_koeln
def test_the_engine_estimate_of_pixels_and_windows_is_shown_before_a_run(
    dock,
    random_weight_engine,  # noqa: F811
):
    layer = add_koeln()
    dock.layer_combo.setLayer(layer)
    dock.engine_options_edit.setText(TINY_ENGINE_OPTIONS_JSON)
    sent = dock.estimates_sent
    dock.extent_widget.setOutputExtentFromUser(
        QgsRectangle(346_000, 5_647_600, 346_400, 5_648_000), layer.crs()
    )
    for gsd in (3.0, 2.0, 1.0):  # quick changes: one request, for the last choice (debounced)
        dock.gsd_spin.setValue(gsd)
    assert dock.time_label.text() == "estimating…"
    wait_for(lambda: dock.last_estimate is not None, 60)
    assert dock.estimates_sent == sent + 1
    estimate = dock.last_estimate
    assert estimate["output_size"] == [800, 800]  # 400 m of the layer's 0.5 m grid
    assert estimate["working_size"] == [400, 400]  # 400 m at 1 m per pixel
    windows = sliding_windows(400) ** 2
    assert estimate["crops"] == windows == 9 and estimate["crop_evaluations"] == windows
    # In plain words: the output keeps the layer's 0.5 m pixels; the model sees 1 m pixels.
    assert dock.size_label.text() == "800 × 800 px at 0.5 m/px, 400 m × 400 m (16.0 ha)"
    assert dock.model_label.text() == "400 × 400 px, 9 windows of the model"
    time = estimate["time"]
    assert time["device"] == "cpu" and time["basis"] in ("measured", "reference")
    assert time["seconds"] == pytest.approx(time["window_seconds"] + time["setup_seconds"])
    overhead = time.get("run_overhead_seconds", 0.0)  # a measured run's fixed part
    assert time["window_seconds"] == pytest.approx(overhead + 9 * time["seconds_per_window"])
    words = "speed measured here" if time["basis"] == "measured" else "benchmark speed"
    assert f"{duration_text(time['seconds'])} on the CPU" in dock.time_label.text()
    assert words in dock.time_label.text()
    # "What the map shows": the rendered grid stands in, one pixel per 2 m, read one to one.
    dock.last_estimate = None
    dock.source_combo.setCurrentIndex(SOURCE_MAP)
    dock.extent_widget.setOutputExtentFromUser(
        QgsRectangle(346_000, 5_647_800, 346_600, 5_648_000), layer.crs()
    )
    dock.gsd_spin.setValue(2.0)
    wait_for(lambda: dock.last_estimate is not None, 60)
    assert dock.last_estimate["output_size"] == dock.last_estimate["working_size"] == [300, 100]
    assert dock.last_estimate["crops"] == sliding_windows(300) * sliding_windows(100)


@needs_koeln
def test_vocabulary_edits_that_change_the_queries_ask_for_a_new_estimate(
    dock,
    random_weight_engine,  # noqa: F811
):
    layer = add_koeln()
    dock.layer_combo.setLayer(layer)
    dock.engine_options_edit.setText(TINY_ENGINE_OPTIONS_JSON)
    dock.vocabulary_editor.set_vocabulary(Vocabulary.from_lines("building,roof\nwater"))
    dock.extent_widget.setOutputExtentFromUser(
        QgsRectangle(346_000, 5_647_600, 346_400, 5_648_000), layer.crs()
    )
    wait_for(lambda: dock.last_estimate is not None, 60)
    sent = dock.estimates_sent
    assert dock._classes_estimated == ["building,roof", "water"]
    # A colour edit changes no query: nothing is asked.
    recoloured = Vocabulary.from_lines("building,roof\nwater")
    recoloured.classes[1].color = "#123456"
    dock.vocabulary_editor.set_vocabulary(recoloured)
    QCoreApplication.processEvents()
    assert not dock._estimate_timer.isActive() and dock.estimates_sent == sent
    # A synonym more: the estimate is asked again (debounced), with the new lines.
    dock.last_estimate = None
    dock.vocabulary_editor.set_vocabulary(Vocabulary.from_lines("building,roof\nwater,river"))
    assert dock.time_label.text() == "estimating…"
    wait_for(lambda: dock.last_estimate is not None, 60)
    assert dock.estimates_sent == sent + 1
    assert dock._classes_estimated == ["building,roof", "water,river"]
    # An unusable vocabulary (no classes) sends none: the estimate then counts each window once.
    dock.vocabulary_editor.set_vocabulary(Vocabulary())
    wait_for(lambda: dock.estimates_sent == sent + 2, 60)
    assert dock._classes_estimated is None


def test_without_an_engine_the_size_line_says_so(dock, tmp_path):
    from qgis.core import QgsCoordinateReferenceSystem

    from rs_ovseg_qgis.core.settings import set_engine_python

    set_engine_python(tmp_path / "no-python")
    try:
        dock.source_combo.setCurrentIndex(SOURCE_MAP)
        utm = QgsCoordinateReferenceSystem("EPSG:25832")
        dock.extent_widget.setOutputCrs(utm)
        dock.extent_widget.setOutputExtentFromUser(QgsRectangle(0, 0, 100, 100), utm)
        dock.gsd_spin.setValue(1.0)
        wait_for(lambda: "not set up" in dock.time_label.text(), 10)
    finally:
        set_engine_python(None)
    assert dock.size_label.text() == "100 m × 100 m (1.0 ha)"
    assert dock.model_label.text() == "100 × 100 px"
    assert dock.last_estimate is None


def test_the_extent_follows_the_map_view_until_the_user_chooses_one(dock, qgis_iface):
    canvas = qgis_iface.mapCanvas()
    crs = QgsProject.instance().crs()
    canvas.setDestinationCrs(crs)
    first = QgsRectangle(1000, 2000, 1400, 2300)
    canvas.setExtent(first)
    QCoreApplication.processEvents()
    assert dock.current_extent() is not None
    assert QgsRectangle(dock.current_extent()) == canvas.extent()  # the default: what the map shows
    canvas.setExtent(QgsRectangle(5000, 6000, 5200, 6100))
    QCoreApplication.processEvents()
    assert QgsRectangle(dock.current_extent()) == canvas.extent()  # still following
    chosen = QgsRectangle(10, 20, 30, 40)
    dock.extent_widget.setOutputExtentFromUser(chosen, crs)
    canvas.setExtent(QgsRectangle(7000, 8000, 7100, 8050))
    QCoreApplication.processEvents()
    assert QgsRectangle(dock.current_extent()) == chosen  # the user's choice is kept
