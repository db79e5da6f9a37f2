"""Run by ``qgis --code`` under Xvfb: the AerOSeg loop in the real desktop, with screenshots.

    RS_OVSEG_CODE=resources/scripts/qgis_aeroseg_demo.py RS_OVSEG_SCREENSHOT_DIR=resources/screenshots \
        HEADLESS=1 bash resources/scripts/run_qgis.sh /tmp/rs_ovseg_profiles /tmp/unused.png

1. A zero-shot SegEarth-OV run of the Köln tile (``RS_OVSEG_DEMO_RASTER``) from the panel, with class
   polygons: ``aeroseg_1_zero_shot.png``.
2. A few corrected polygons with a ``class`` field (drawn by eye on the tile) in a temporary GeoPackage,
   and Processing's *Train AerOSeg on labelled imagery* (``rs_ovseg:train``) opened on them:
   ``aeroseg_2_train_dialog.png``; run from the dialog (the tiny architecture, so it finishes in about a
   minute on a laptop), shot near its end with the loss and time left per step:
   ``aeroseg_3_training.png``.
3. The panel's method choice now lists the trained model: ``aeroseg_4_method_choice.png``; a run with
   it: ``aeroseg_5_trained_map.png``. Then QGIS quits.

Random weights (no weights can be downloaded on the build machines): the maps are noise; the path
through the panel, Processing, the engine worker and the project is real.
"""

import os
import sys
import tempfile
from pathlib import Path

from qgis import processing
from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QProgressBar
from qgis.utils import iface

VENV = Path(os.environ.get("RS_OVSEG_VENV", sys.prefix))  # set by run_qgis.sh: <project>/.venv
sys.path.insert(0, str(VENV.parent / "resources" / "scripts"))  # (no __file__ under qgis --code)
from qgis_desktop import Desktop, add_labelled_polygons, fill_panel, open_tile, run_ended, show_panel  # noqa: E402

VOCABULARY = "building,roof\nroad,street\ntree\ncropland,field\ngrass"
ZERO_SHOT_OPTIONS = '{"clip": "RSOVSeg-Tiny-ViT-16", "upsampler": "none"}'  # a random tiny CLIP: fast
TRAIN_CLASSES = "building,roof\nroad\ncropland,field"
MAP_OPACITY = 0.55  # the runs' layers over the tile: the imagery shows through
TRAIN_STEPS = 60
DOCK_WIDTH_PX = 460
LAYERS_WIDTH_PX = 300
GIVE_UP_S = 600
# Corrected polygons, by eye on the Köln tile, in pixels of its 1000 × 1000 grid (0.5 m).
CORRECTED = [
    ("road", [(409, 131), (428, 131), (528, 388), (512, 394)]),
    ("road", [(431, 438), (588, 408), (591, 420), (434, 450)]),
    ("building", [(338, 194), (412, 194), (412, 269), (338, 269)]),
    ("building", [(462, 525), (519, 525), (519, 588), (462, 588)]),
    ("building", [(825, 38), (975, 38), (975, 350), (825, 350)]),
    ("cropland", [(575, 700), (988, 700), (988, 988), (575, 988)]),
    ("cropland", [(150, 900), (563, 900), (563, 988), (150, 988)]),
]

os.environ["RS_OVSEG_RANDOM_WEIGHTS"] = "1"  # read by the engine worker the plugin starts
state = {"work": Path(tempfile.mkdtemp(prefix="rs_ovseg_aeroseg_demo_"))}


def fail(label: str) -> None:
    desktop.say(f"failed: {label}")
    desktop.shoot(f"failed_{label.replace(' ', '_')}.png")
    desktop.exit(1)


desktop = Desktop("aeroseg demo", GIVE_UP_S, give_up=lambda label: fail(f"waiting for {label}"))
say, shoot, poll = desktop.say, desktop.shoot, desktop.poll


def run_finished() -> bool:
    return run_ended(state["dock"])


def set_up() -> None:
    layer = open_tile()
    state["layer"] = layer
    dock = show_panel(DOCK_WIDTH_PX, LAYERS_WIDTH_PX)
    state["dock"] = dock
    fill_panel(dock, layer, VOCABULARY, ZERO_SHOT_OPTIONS)
    dock.polygons_check.setChecked(True)
    dock.output_widget.setFilePath(str(state["work"] / "maps"))
    dock.run_button.click()
    say("zero-shot run started")
    poll(run_finished, after_zero_shot, "the zero-shot run")


def see_through() -> None:
    """The runs' classes and polygons half transparent, so the tile shows under them."""
    for layer in QgsProject.instance().mapLayers().values():
        if layer.name().startswith("Köln"):
            layer.setOpacity(MAP_OPACITY)
            layer.triggerRepaint()


def after_zero_shot() -> None:
    dock = state["dock"]
    if dock.run.status != "ok":
        return fail(f"zero-shot run {dock.run.status}: {dock.status_label.text()}")
    see_through()
    iface.layerTreeView().expandAll()
    iface.mapCanvas().setExtent(state["layer"].extent())
    iface.mapCanvas().refresh()
    QTimer.singleShot(2500, lambda: (shoot("aeroseg_1_zero_shot.png"), open_training()))


def write_corrected(layer: QgsRasterLayer) -> QgsVectorLayer:
    """The corrected polygons as a GeoPackage in the tile's CRS, outlined and labelled on the map."""
    path = state["work"] / "corrected.gpkg"
    return add_labelled_polygons(layer, CORRECTED, path, "corrected polygons", "255,230,0,60", "0.8")


def open_training() -> None:
    corrected = write_corrected(state["layer"])
    state["model"] = state["work"] / "koeln_roofs_roads_fields.safetensors"
    parameters = {
        "INPUT": [state["layer"].id()],
        "POLYGONS": corrected.id(),
        "CLASS_FIELD": "class",
        "CLASSES": TRAIN_CLASSES,
        "STEPS": TRAIN_STEPS,
        "BATCH_SIZE": 2,
        "ARCHITECTURE": 1,  # tiny
        "RANDOM_WEIGHTS": True,
        "OUTPUT": str(state["model"]),
    }
    dialog = processing.createAlgorithmDialog("rs_ovseg:train", parameters)
    state["dialog"] = dialog
    dialog.setGeometry(700, 90, 890, 820)  # over the panel: the corrected polygons stay in view
    dialog.show()
    say("train dialog open")
    QTimer.singleShot(2500, lambda: (shoot("aeroseg_2_train_dialog.png"), train()))


def train() -> None:
    from rs_ovseg_qgis.core.trained_models import trained_models

    state["dialog"].runButton().click()
    say("training started")
    bar = state["dialog"].findChild(QProgressBar)
    path = str(state["model"].resolve())
    # Near the end (QGIS resets the bar to 0 once an algorithm has finished), then when it is remembered.
    poll(lambda: bar.value() >= 85, lambda: shoot("aeroseg_3_training.png"), "85 % of the training")
    poll(lambda: any(m.path == path for m in trained_models()), after_training, "the training")


def after_training() -> None:
    say("model trained and remembered")
    QTimer.singleShot(1000, choose_model)


def choose_model() -> None:
    from rs_ovseg_qgis.ui.trained_method_items import MODEL_ROLE

    state["dialog"].close()
    dock = state["dock"]
    index = dock.method_combo.findData(str(state["model"].resolve()), MODEL_ROLE)
    if index < 0:
        return fail("the trained model in the method choice")
    dock.method_combo.setCurrentIndex(index)
    from rs_ovseg_qgis.core.vocabulary import Vocabulary

    dock.vocabulary_editor.set_vocabulary(Vocabulary.from_lines(TRAIN_CLASSES, "Köln, trained classes"))
    dock.engine_options_edit.setText("")  # the zero-shot run's CLIP option is not AerOSeg's
    dock.polygons_check.setChecked(False)
    dock.widget().ensureWidgetVisible(dock.method_combo, 0, 0)
    QApplication.processEvents()
    dock.method_combo.showPopup()
    QTimer.singleShot(1500, lambda: (shoot("aeroseg_4_method_choice.png"), segment_again()))


def segment_again() -> None:
    dock = state["dock"]
    dock.method_combo.hidePopup()
    say(f"segmenting with {dock.method_combo.currentText()} at {dock.gsd_spin.value()} m")
    dock.run_button.click()
    poll(run_finished, after_trained_run, "the run with the trained model")


def after_trained_run() -> None:
    dock = state["dock"]
    if dock.run.status != "ok":
        return fail(f"trained run {dock.run.status}: {dock.status_label.text()}")
    root = QgsProject.instance().layerTreeRoot()
    corrected = QgsProject.instance().mapLayersByName("corrected polygons")
    if corrected:  # the new map itself: the corrected polygons and the zero-shot run were shown before
        root.findLayer(corrected[0].id()).setItemVisibilityChecked(False)
    zero_shot = [group for group in root.children() if group.name().startswith("Köln land cover")]
    see_through()
    iface.layerTreeView().expandAll()
    for group in zero_shot:
        group.setItemVisibilityChecked(False)
        group.setExpanded(False)
    iface.mapCanvas().setExtent(state["layer"].extent())
    iface.mapCanvas().refresh()
    QTimer.singleShot(2500, lambda: (shoot("aeroseg_5_trained_map.png"), QApplication.instance().exit(0)))


QTimer.singleShot(4000, set_up)
