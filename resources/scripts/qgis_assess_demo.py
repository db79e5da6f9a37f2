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
import sys
import tempfile
from pathlib import Path

from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.gui import QgsCollapsibleGroupBox
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QDialogButtonBox
from qgis.utils import iface

VENV = Path(os.environ.get("RS_OVSEG_VENV", sys.prefix))  # set by run_qgis.sh: <project>/.venv
sys.path.insert(0, str(VENV.parent / "resources" / "scripts"))  # (no __file__ under qgis --code)
from qgis_desktop import Desktop, add_labelled_polygons, fill_panel, open_tile, run_ended, show_panel  # noqa: E402

VOCABULARY = "building,roof\nroad,street\ntree\nwater\ncropland,field\ngrass\nbare soil"
OPTIONS = '{"clip": "ViT-B-16", "upsampler": "none", "templates": "remote-sensing"}'
DOCK_WIDTH_PX = 460
LAYERS_WIDTH_PX = 300
FIGURE_WINDOW_AT = (250, 150)  # screen pixels: over the map canvas
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
state = {}
desktop = Desktop("assess demo", GIVE_UP_S)
say, shoot, poll = desktop.say, desktop.shoot, desktop.poll


def write_reference(layer: QgsRasterLayer, folder: Path) -> QgsVectorLayer:
    """The digitised polygons as a GeoPackage in the tile's CRS, outlined on the map."""
    path = folder / "reference_digitised.gpkg"
    return add_labelled_polygons(layer, REFERENCE, path, "reference (digitised)", "0,0,0,0", "0.6")


def set_up() -> None:
    layer = open_tile()
    state["layer"] = layer
    dock = show_panel(DOCK_WIDTH_PX, LAYERS_WIDTH_PX)
    state["dock"] = dock
    fill_panel(dock, layer, VOCABULARY, OPTIONS)
    dock.output_widget.setFilePath(tempfile.mkdtemp(prefix="rs_ovseg_assess_demo_"))
    dock.run_button.click()
    say("run started")
    poll(lambda: run_ended(dock), after_run, "the run")


def after_run() -> None:
    dock = state["dock"]
    if dock.run.status != "ok":
        say(f"run {dock.run.status}: {dock.status_label.text()}")
        shoot("assess_failed_run.png")
        desktop.exit(1)
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
    poll(lambda: run_ended(section), after_assess, "the assessment")


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
    QTimer.singleShot(1500, lambda: (shoot("assess_figure.png"), desktop.exit(0)))


QTimer.singleShot(4000, set_up)
