"""Run by ``qgis --code`` under Xvfb: a whole RS OVSeg run in the real desktop, with screenshots.

Loads the demo raster (``RS_OVSEG_DEMO_RASTER``), opens the panel, fills a land-cover vocabulary, sets
the engine options (random weights: no weights can be downloaded on the build machines), clicks Run,
and saves ``run_before.png`` (estimate shown), ``run_during.png`` (progress) and ``run_after.png``
(styled group, legend expanded) into ``RS_OVSEG_SCREENSHOT_DIR``; then quits QGIS.

Environment: ``RS_OVSEG_DEMO_CLIP`` (default ViT-B-16) picks the CLIP architecture, ``RS_OVSEG_DEMO_GSD``
(default 0.5 m: the full tile, long enough to see the progress bar move) the resolution.
"""

import os
import sys
import tempfile
from pathlib import Path

from qgis.core import QgsProject
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface

VENV = Path(os.environ.get("RS_OVSEG_VENV", sys.prefix))  # set by run_qgis.sh: <project>/.venv
sys.path.insert(0, str(VENV.parent / "resources" / "scripts"))  # (no __file__ under qgis --code)
from qgis_desktop import Desktop, open_tile, show_panel  # noqa: E402

CLIP = os.environ.get("RS_OVSEG_DEMO_CLIP", "ViT-B-16")
GSD_M = float(os.environ.get("RS_OVSEG_DEMO_GSD", "0.5"))
VOCABULARY = "building,roof; road,street; tree; water; cropland,field; grass; bare soil"
DOCK_WIDTH_PX = 430
LAYERS_WIDTH_PX = 360
GIVE_UP_S = 420

os.environ["RS_OVSEG_RANDOM_WEIGHTS"] = "1"  # read by the engine worker the plugin starts
state = {"dock": None, "layer": None, "during": False}
desktop = Desktop("demo", GIVE_UP_S)
say, shoot, poll, finish = desktop.say, desktop.shoot, desktop.poll, desktop.exit


def set_up() -> None:
    layer = open_tile(refresh=True)
    state["layer"] = layer

    from rs_ovseg_qgis.core.vocabulary import Vocabulary

    # The Layers panel gets the whole left side: the legend is the point here.
    dock = show_panel(DOCK_WIDTH_PX, LAYERS_WIDTH_PX)
    state["dock"] = dock
    dock.vocabulary_editor.set_vocabulary(
        Vocabulary.from_lines(VOCABULARY.replace(";", "\n"), "Köln land cover")
    )
    dock.layer_combo.setLayer(layer)
    dock.extent_widget.setOutputExtentFromUser(layer.extent(), layer.crs())
    dock.gsd_spin.setValue(GSD_M)
    options = f'{{"clip": "{CLIP}", "upsampler": "none", "templates": "remote-sensing"}}'
    dock.engine_options_edit.setText(options)
    dock.engine_options_edit.editingFinished.emit()
    dock.output_widget.setFilePath(tempfile.mkdtemp(prefix="rs_ovseg_demo_"))
    say("panel filled; waiting for the engine's estimate")
    poll(lambda: dock.last_estimate is not None, before_run, "estimate")


def before_run() -> None:
    iface.mapCanvas().setExtent(state["layer"].extent())  # the canvas has its final size by now
    iface.mapCanvas().refresh()
    QTimer.singleShot(500, lambda: (shoot("run_before.png"), start_run()))


def start_run() -> None:
    dock = state["dock"]
    dock.run_button.click()
    say("run started")
    poll(lambda: 15 <= dock.progress_bar.value() < 90 or dock.run.status is not None, during_run, "progress")


def during_run() -> None:
    dock = state["dock"]
    if dock.run.status is None:
        shoot("run_during.png")
    else:
        say(f"the run ended before a progress screenshot: {dock.run.status}")
    poll(lambda: dock.run.status is not None, after_run, "the end of the run")


def after_run() -> None:
    dock = state["dock"]
    say(f"run {dock.run.status}: {dock.status_label.text()}")
    if dock.run.status != "ok":
        shoot("run_failed.png")
        finish(1)
        return
    view = iface.layerTreeView()
    view.expandAll()  # the run's group and its layers' legends (class names and colours)
    input_node = QgsProject.instance().layerTreeRoot().findLayer(state["layer"].id())
    view.collapse(view.layerTreeModel().node2index(input_node))
    iface.mapCanvas().refresh()
    QTimer.singleShot(2500, lambda: (shoot("run_after.png"), finish(0)))


QTimer.singleShot(4000, set_up)
