"""Run by ``qgis --code`` under Xvfb (resources/scripts/desktop_tour.sh): the panel's paths in the real
desktop, one screenshot each, into ``RS_OVSEG_SCREENSHOT_DIR``:

- ``panel.png``: the Köln tile chosen, the engine's estimate shown (output, model resolution, time);
- ``extent_rectangle.png``: a rectangle drawn on the map with the extent widget's map tool (real mouse
  events on the canvas), then outlined on the map;
- ``selected_features.png``: the extent of the selected features of a vector layer;
- ``outputs_polygons_confidence.png`` / ``outputs_confidence.png``: a run writing polygons and confidence,
  both added, styled, to the run's group;
- ``xyz_map_view.png``: "What the map shows" over an XYZ layer served on 127.0.0.1 (tiles cut from the Köln
  tile with gdal2tiles), segmented;
- ``wms_layer.png``: a WMS layer (QGIS Server on 127.0.0.1 publishing the Köln tile) as the input layer.

Random weights (no weights can be downloaded on the build machines): the classes are noise, the paths are
real. ``RS_OVSEG_TILES`` is the XYZ folder, ``RS_OVSEG_VENV`` the Python that runs the servers.
"""

import os
import sys
import tempfile
import traceback
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFillSymbol,
    QgsGeometry,
    QgsLayerTreeGroup,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QPoint, Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.utils import iface

VENV = Path(os.environ.get("RS_OVSEG_VENV", sys.prefix))  # set by run_qgis.sh: <project>/.venv
# (no __file__ under qgis --code)
sys.path[:0] = [str(VENV.parent / "tests" / "plugin"), str(VENV.parent / "resources" / "scripts")]
from map_servers import LocalServer, wms_uri, xyz_uri  # noqa: E402
from qgis_desktop import DEMO, Desktop, open_tile, run_ended, show_panel  # noqa: E402

TILES = os.environ.get("RS_OVSEG_TILES", "")
PYTHON = str(VENV / "bin" / "python")
VOCABULARY = "building,roof\nroad,street\ntree\nwater\ncropland,field\ngrass\nbare soil"
OPTIONS = '{"clip": "ViT-B-16", "upsampler": "none", "templates": "remote-sensing"}'
DOCK_WIDTH_PX = 440
LAYERS_WIDTH_PX = 300
GIVE_UP_S = 600
WEB_MERCATOR = QgsCoordinateReferenceSystem("EPSG:3857")

os.environ["RS_OVSEG_RANDOM_WEIGHTS"] = "1"  # read by the engine worker the plugin starts
state = {"servers": [], "failed": False}


def close_servers() -> None:
    for server in state["servers"]:
        server.close()


desktop = Desktop("tour", GIVE_UP_S, screenshot="window", on_exit=close_servers)
say, shoot, finish = desktop.say, desktop.shoot, desktop.exit


def guarded(then):
    """``then`` that reports an error and quits instead of leaving QGIS on an error dialog."""

    def call():
        try:
            then()
        except Exception:
            traceback.print_exc()
            shoot("failed_step.png")
            finish(1)

    return call


def poll(condition, then, label: str) -> None:
    """``then()`` once ``condition()`` holds, checked without blocking QGIS (an error in it quits)."""
    desktop.poll(condition, guarded(then), label)


def later(ms: int, then) -> None:
    QTimer.singleShot(ms, guarded(then))


def dock():
    return state["dock"]


def estimated(then, label="estimate"):
    """Wait for a fresh engine estimate, then a moment for the canvas, then ``then()``."""
    dock().last_estimate = None
    poll(lambda: dock().last_estimate is not None, lambda: later(800, then), label)


def run_and_wait(then):
    dock().run_button.click()
    say("run started")
    poll(lambda: run_ended(dock()), lambda: ran(then), "run end")


def ran(then):
    status = dock().run.status
    say(f"run {status}: {dock().status_label.text()}")
    if status != "ok":
        shoot("failed_run.png")
        finish(1)
        return
    iface.layerTreeView().expandAll()
    iface.mapCanvas().refresh()
    later(2500, then)


def set_visible(layer_or_group_ids: list, visible: bool) -> None:
    root = QgsProject.instance().layerTreeRoot()
    for node in root.children():
        if (
            node.name() in layer_or_group_ids
            or getattr(node, "layerId", lambda: None)() in layer_or_group_ids
        ):
            node.setItemVisibilityChecked(visible)


def hide_everything() -> None:
    for node in QgsProject.instance().layerTreeRoot().children():
        node.setItemVisibilityChecked(False)
        node.setExpanded(False)


# --- 1. the panel --------------------------------------------------------------------------------
def set_up() -> None:
    layer = open_tile()
    state["koeln"] = layer
    canvas = iface.mapCanvas()
    from rs_ovseg_qgis.core.vocabulary import Vocabulary

    panel = show_panel(DOCK_WIDTH_PX, LAYERS_WIDTH_PX)
    state["dock"] = panel
    panel.vocabulary_editor.set_vocabulary(Vocabulary.from_lines(VOCABULARY, "Köln land cover"))
    panel.engine_options_edit.setText(OPTIONS)
    panel.engine_options_edit.editingFinished.emit()
    panel.output_widget.setFilePath(tempfile.mkdtemp(prefix="rs_ovseg_tour_"))
    panel.layer_combo.setLayer(layer)
    panel.extent_widget.setOutputExtentFromUser(layer.extent(), layer.crs())
    say("panel filled")
    estimated(lambda: (canvas.setExtent(layer.extent()), later(800, panel_shot)))


def panel_shot() -> None:
    say(f"output: {dock().size_label.text()!r} model: {dock().model_label.text()!r}")
    say(f"time: {dock().time_label.text()!r}")
    shoot("panel.png")
    draw_rectangle()


# --- 2. a rectangle drawn on the map ---------------------------------------------------------------
def draw_rectangle() -> None:
    canvas = iface.mapCanvas()
    dock().extent_widget.setOutputExtentFromDrawOnCanvas()  # the widget's "Draw on Canvas" entry
    viewport = canvas.viewport()
    w, h = viewport.width(), viewport.height()
    start, end = QPoint(int(w * 0.30), int(h * 0.25)), QPoint(int(w * 0.62), int(h * 0.58))
    QTest.mouseMove(viewport, start)
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    for step in range(1, 11):
        point = start + (end - start) * (step / 10)
        QTest.mouseMove(viewport, point, 20)
    later(300, lambda: release(viewport, end))


def release(viewport, end) -> None:
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
    say(f"drawn extent: {dock().current_extent().toString(1)}")
    estimated(rectangle_shot)


def rectangle_shot() -> None:
    say(f"output: {dock().size_label.text()!r} time: {dock().time_label.text()!r}")
    shoot("extent_rectangle.png")
    select_features()


# --- 3. the selected features' extent -----------------------------------------------------------------
def select_features() -> None:
    koeln = state["koeln"]
    parcels = QgsVectorLayer(f"Polygon?crs={koeln.crs().authid()}&field=name:string", "parcels", "memory")
    e = koeln.extent()
    x0, y0, size = e.xMinimum(), e.yMinimum(), e.width()
    shapes = [  # three parcels in the tile's south-west, centre and north-east (fractions of the tile)
        (0.08, 0.10, 0.30, 0.28),
        (0.42, 0.40, 0.70, 0.66),
        (0.72, 0.70, 0.92, 0.92),
    ]
    features = []
    for index, (a, b, c, d) in enumerate(shapes):
        feature = QgsFeature(parcels.fields())
        rect = QgsRectangle(x0 + a * size, y0 + b * size, x0 + c * size, y0 + d * size)
        feature.setGeometry(QgsGeometry.fromRect(rect))
        feature.setAttribute("name", f"parcel {index + 1}")
        features.append(feature)
    parcels.dataProvider().addFeatures(features)
    parcels.updateExtents()
    parcels.renderer().setSymbol(
        QgsFillSymbol.createSimple({"color": "0,0,0,0", "outline_color": "255,220,0", "outline_width": "0.8"})
    )
    QgsProject.instance().addMapLayer(parcels)
    state["parcels"] = parcels
    ids = [f.id() for f in parcels.getFeatures()]
    parcels.selectByIds([ids[1]])
    iface.setActiveLayer(parcels)
    iface.mapCanvas().setExtent(koeln.extent())
    dock().selection_button.click()
    say(f"selection extent: {dock().current_extent().toString(1)}")
    estimated(lambda: (shoot("selected_features.png"), outputs()))


# --- 4. polygons and confidence ----------------------------------------------------------------------
def outputs() -> None:
    panel = dock()
    panel.advanced_section.setCollapsed(False)
    panel.polygons_check.setChecked(True)
    panel.confidence_check.setChecked(True)
    state["parcels"].removeSelection()
    run_and_wait(outputs_shot)


def outputs_shot() -> None:
    dock().advanced_section.setCollapsed(True)
    later(500, outputs_shot_now)


def outputs_shot_now() -> None:
    root = QgsProject.instance().layerTreeRoot()
    group = next(node for node in root.children() if isinstance(node, QgsLayerTreeGroup))  # the run's
    say(f"group {group.name()}: {[n.name() for n in group.children()]}")
    state["outputs_group"] = group
    shoot("outputs_polygons_confidence.png")
    for node in group.findLayers():  # the confidence alone: the user ticks it, the classes go
        node.setItemVisibilityChecked("confidence" in node.name())
    iface.mapCanvas().refresh()
    later(2000, lambda: (shoot("outputs_confidence.png"), xyz()))


# --- 5. "What the map shows" over an XYZ layer ---------------------------------------------------------
def xyz() -> None:
    server = LocalServer("xyz", TILES, PYTHON)
    state["servers"].append(server)
    say(f"XYZ server on 127.0.0.1:{server.port}")
    dock().last_estimate = None  # the changes below ask for a new one
    hide_everything()
    layer = QgsRasterLayer(xyz_uri(server.port), "Köln tiles (local XYZ)", "wms")
    assert layer.isValid(), "the XYZ layer is not valid"
    QgsProject.instance().addMapLayer(layer)
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(WEB_MERCATOR)
    koeln = state["koeln"]
    to_mercator = QgsCoordinateTransform(koeln.crs(), WEB_MERCATOR, QgsProject.instance())
    view = to_mercator.transformBoundingBox(koeln.extent())
    view.scale(0.7)  # inside the tiles: the whole view is imagery
    canvas.setExtent(view)
    canvas.refresh()
    panel = dock()
    panel.polygons_check.setChecked(False)
    panel.confidence_check.setChecked(False)
    panel.source_combo.setCurrentIndex(1)  # What the map shows
    panel.extent_widget.setOutputExtentFromCurrent()
    poll(lambda: panel.last_estimate is not None, lambda: later(3000, xyz_run), "map view estimate")


def xyz_run() -> None:
    say(f"map view: output {dock().size_label.text()!r}, time {dock().time_label.text()!r}")
    run_and_wait(lambda: (shoot("xyz_map_view.png"), wms()))


# --- 6. a WMS layer as the input layer -----------------------------------------------------------------
def wms() -> None:
    server = LocalServer("wms", str(DEMO), PYTHON)
    state["servers"].append(server)
    say(f"WMS server on 127.0.0.1:{server.port}")
    dock().last_estimate = None
    hide_everything()
    layer = QgsRasterLayer(wms_uri(server.port), "Köln (local WMS)", "wms")
    assert layer.isValid(), f"the WMS layer is not valid: {layer.error().summary()}"
    QgsProject.instance().addMapLayer(layer)
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(state["koeln"].crs())
    canvas.setExtent(state["koeln"].extent())
    canvas.refresh()
    panel = dock()
    panel.source_combo.setCurrentIndex(0)  # Raster layer
    panel.layer_combo.setLayer(layer)
    e = state["koeln"].extent()
    quarter = QgsRectangle(e.xMinimum(), e.center().y(), e.center().x(), e.yMaximum())  # the north-west
    panel.extent_widget.setOutputExtentFromUser(quarter, state["koeln"].crs())
    poll(lambda: panel.last_estimate is not None, lambda: later(3000, wms_run), "WMS estimate")


def wms_run() -> None:
    say(f"WMS layer: output {dock().size_label.text()!r}, time {dock().time_label.text()!r}")
    run_and_wait(lambda: (shoot("wms_layer.png"), finish(0)))


later(4000, set_up)
