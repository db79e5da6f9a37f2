"""Run by ``qgis --code`` under Xvfb: a run, then "Assess against reference…", in the real desktop.

    RS_OVSEG_CODE=resources/scripts/qgis_assess_demo.py RS_OVSEG_SCREENSHOT_DIR=resources/screenshots \
        HEADLESS=1 bash resources/scripts/run_qgis.sh /tmp/rs_ovseg_profiles /tmp/unused.png

Loads the Köln tile (``RS_OVSEG_DEMO_RASTER``), runs the panel with a land-cover vocabulary, digitises a
handful of reference polygons (roofs, roads, the field, a patch of grass, picked by eye on the tile) into
a temporary GeoPackage, opens the assess dialog on them and saves ``assess_dialog.png``, runs the
assessment and saves ``assess_result.png`` (the panel's Accuracy section with the figure), then
``assess_figure.png`` (the figure opened from the panel, large); then quits.

Random weights (no weights can be downloaded on the build machines): the map is noise and its accuracy
is chance level; the path through the dialog, the engine, the panel and the project is real.
"""

import os
import subprocess
import tempfile
import time
from pathlib import Path

from qgis.core import (
    QgsFeature,
    QgsField,
    QgsFillSymbol,
    QgsGeometry,
    QgsPalLayerSettings,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.gui import QgsCollapsibleGroupBox
from qgis.PyQt.QtCore import Qt, QTimer, QVariant
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QApplication, QDialogButtonBox, QDockWidget
from qgis.utils import iface, plugins

OUT_DIR = Path(os.environ.get("RS_OVSEG_SCREENSHOT_DIR", "resources/screenshots")).resolve()
DEMO = Path(os.environ.get("RS_OVSEG_DEMO_RASTER", "/nonexistent"))
VOCABULARY = "building,roof\nroad,street\ntree\nwater\ncropland,field\ngrass\nbare soil"
OPTIONS = '{"clip": "ViT-B-16", "upsampler": "none", "templates": "remote-sensing"}'
SCREEN = (1600, 1000)
DOCK_WIDTH_PX = 460
LAYERS_WIDTH_PX = 300
FIGURE_WINDOW_AT = (250, 150)  # screen pixels: over the map canvas
POLL_MS = 150
GIVE_UP_S = 420
# Reference polygons digitised by eye on the Köln tile, in pixels of its 1000 × 1000 grid (0.5 m).
REFERENCE = [
    ("road", [(409, 131), (428, 131), (528, 388), (512, 394)]),
    ("road", [(431, 438), (588, 408), (591, 420), (434, 450)]),
    ("road", [(288, 250), (303, 247), (384, 463), (369, 469)]),
    ("building", [(338, 194), (412, 194), (412, 269), (338, 269)]),
    ("building", [(400, 331), (444, 331), (444, 381), (400, 381)]),
    ("building", [(462, 525), (519, 525), (519, 588), (462, 588)]),
    ("building", [(650, 450), (725, 450), (725, 513), (650, 513)]),
    ("building", [(825, 38), (975, 38), (975, 350), (825, 350)]),
    ("building", [(6, 475), (88, 475), (88, 600), (6, 600)]),
    ("cropland", [(575, 700), (988, 700), (988, 988), (575, 988)]),
    ("cropland", [(150, 900), (563, 900), (563, 988), (150, 988)]),
    ("grass", [(75, 425), (150, 425), (150, 481), (75, 481)]),
]

os.environ["RS_OVSEG_RANDOM_WEIGHTS"] = "1"  # read by the engine worker the plugin starts
state = {"started": time.monotonic()}


def say(message: str) -> None:
    print(f"[assess demo {time.monotonic() - state['started']:5.1f}s] {message}", flush=True)


def shoot(name: str) -> None:
    QApplication.processEvents()
    subprocess.run(["import", "-window", "root", str(OUT_DIR / name)], check=True)
    say(f"screenshot {OUT_DIR / name}")


def poll(condition, then, label: str) -> None:
    """Calls ``then()`` once ``condition()`` holds, without blocking QGIS."""
    if time.monotonic() - state["started"] > GIVE_UP_S:
        say(f"gave up waiting for: {label}")
        shoot(f"failed_{label.replace(' ', '_')}.png")
        QApplication.instance().exit(1)
    elif condition():
        then()
    else:
        QTimer.singleShot(POLL_MS, lambda: poll(condition, then, label))


def write_reference(layer: QgsRasterLayer, folder: Path) -> QgsVectorLayer:
    """The digitised polygons as a GeoPackage in the tile's CRS, outlined on the map."""
    x0, y1 = layer.extent().xMinimum(), layer.extent().yMaximum()
    step = layer.rasterUnitsPerPixelX()
    memory = QgsVectorLayer(f"Polygon?crs={layer.crs().authid()}", "reference", "memory")
    memory.dataProvider().addAttributes([QgsField("class", QVariant.String)])
    memory.updateFields()
    features = []
    for name, corners in REFERENCE:
        ring = [QgsPointXY(x0 + col * step, y1 - row * step) for col, row in corners]
        feature = QgsFeature(memory.fields())
        feature.setAttributes([name])
        feature.setGeometry(QgsGeometry.fromPolygonXY([ring]))
        features.append(feature)
    memory.dataProvider().addFeatures(features)
    path = folder / "reference_digitised.gpkg"
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    QgsVectorFileWriter.writeAsVectorFormatV2(
        memory, str(path), QgsProject.instance().transformContext(), options
    )
    reference = QgsVectorLayer(str(path), "reference (digitised)", "ogr")
    symbol = QgsFillSymbol.createSimple(
        {"color": "0,0,0,0", "outline_color": "255,230,0", "outline_width": "0.6"}
    )
    reference.renderer().setSymbol(symbol)
    labels = QgsPalLayerSettings()
    labels.fieldName = "class"
    text = QgsTextFormat()
    text.setColor(QColor(255, 230, 0))
    text.setSize(11)
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setColor(QColor(0, 0, 0))
    text.setBuffer(buffer)
    labels.setFormat(text)
    reference.setLabeling(QgsVectorLayerSimpleLabeling(labels))
    reference.setLabelsEnabled(True)
    project = QgsProject.instance()
    project.addMapLayer(reference, False)
    project.layerTreeRoot().insertLayer(0, reference)  # on top: its outlines over the classes
    return reference


def set_up() -> None:
    window = iface.mainWindow()
    window.setGeometry(0, 0, *SCREEN)  # no window manager under Xvfb: place the window by hand
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    assert "rs_ovseg_qgis" in plugins, f"plugin not loaded; loaded: {sorted(plugins)}"
    layer = QgsRasterLayer(str(DEMO), "oem_koeln_50")
    assert layer.isValid(), f"cannot open {DEMO}"
    QgsProject.instance().addMapLayer(layer)
    iface.mapCanvas().setExtent(layer.extent())
    state["layer"] = layer
    from rs_ovseg_qgis.core.vocabulary import Vocabulary

    dock = window.findChild(QDockWidget, "RsOvsegDock")
    state["dock"] = dock
    dock.show()
    dock.raise_()
    browser = window.findChild(QDockWidget, "Browser")
    if browser is not None:
        browser.hide()
    docks, widths = [dock], [DOCK_WIDTH_PX]
    layers_panel = window.findChild(QDockWidget, "Layers")
    if layers_panel is not None:
        docks.append(layers_panel)
        widths.append(LAYERS_WIDTH_PX)
    window.resizeDocks(docks, widths, Qt.Orientation.Horizontal)
    dock.vocabulary_editor.set_vocabulary(Vocabulary.from_lines(VOCABULARY, "Köln land cover"))
    dock.layer_combo.setLayer(layer)
    dock.extent_widget.setOutputExtentFromUser(layer.extent(), layer.crs())
    dock.engine_options_edit.setText(OPTIONS)
    dock.output_widget.setFilePath(tempfile.mkdtemp(prefix="rs_ovseg_assess_demo_"))
    dock.run_button.click()
    say("run started")
    poll(lambda: dock.run is not None and dock.run.status is not None, after_run, "the run")


def after_run() -> None:
    dock = state["dock"]
    if dock.run.status != "ok":
        say(f"run {dock.run.status}: {dock.status_label.text()}")
        shoot("assess_failed_run.png")
        QApplication.instance().exit(1)
        return
    reference = write_reference(state["layer"], Path(dock.output_widget.filePath()))
    state["reference"] = reference
    section = dock.assess_section
    section.assess_button.click()
    dialog = section.dialog
    dialog.reference_combo.setLayer(reference)
    dialog.field_combo.setField("class")
    dialog.move(420, 260)
    say("dialog open")
    QTimer.singleShot(1500, lambda: (shoot("assess_dialog.png"), assess(dialog)))


def assess(dialog) -> None:
    dialog.button_box.button(QDialogButtonBox.StandardButton.Ok).click()
    section = state["dock"].assess_section
    poll(lambda: section.run is not None and section.run.status is not None, after_assess, "the assessment")


def after_assess() -> None:
    dock = state["dock"]
    section = dock.assess_section
    say(f"assessment {section.run.status}: {section.summary_label.text()}")
    # The result is the point: fold the sections above it and scroll the panel down to it.
    for box in dock.findChildren(QgsCollapsibleGroupBox):
        if box is not section:
            box.setCollapsed(True)
    QApplication.processEvents()
    dock.widget().ensureWidgetVisible(section.figure_label, 0, 0)
    view = iface.layerTreeView()
    view.expandAll()
    input_node = QgsProject.instance().layerTreeRoot().findLayer(state["layer"].id())
    view.collapse(view.layerTreeModel().node2index(input_node))
    iface.mapCanvas().setExtent(state["layer"].extent())
    iface.mapCanvas().refresh()
    QTimer.singleShot(2000, lambda: (shoot("assess_result.png"), open_figure()))


def open_figure() -> None:
    """A click on the panel's thumbnail: the figure in its own window, over the map."""
    window = state["dock"].assess_section.figure_label.open_window()
    window.move(*FIGURE_WINDOW_AT)
    QTimer.singleShot(1500, lambda: (shoot("assess_figure.png"), QApplication.instance().exit(0)))


QTimer.singleShot(4000, set_up)
