"""Driving the real QGIS desktop from a ``qgis --code`` script (run_qgis.sh, under Xvfb): what the demo
and tour scripts share. Log lines with the time since start, screenshots, waiting for a condition
without blocking QGIS, the Köln tile and the RS OVSeg panel laid out, labelled polygons drawn on it.

A script finds this module through ``RS_OVSEG_VENV`` (set by run_qgis.sh: <project>/.venv), as
``qgis --code`` gives it no ``__file__``::

    VENV = Path(os.environ.get("RS_OVSEG_VENV", sys.prefix))
    sys.path.insert(0, str(VENV.parent / "resources" / "scripts"))
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
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
from qgis.PyQt.QtCore import Qt, QTimer, QVariant
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QApplication, QDockWidget
from qgis.utils import iface, plugins

OUT_DIR = Path(os.environ.get("RS_OVSEG_SCREENSHOT_DIR", "resources/screenshots")).resolve()
DEMO = Path(os.environ.get("RS_OVSEG_DEMO_RASTER", "/nonexistent"))
SCREEN = (1600, 1000)  # Xvfb's screen (run_qgis.sh), in pixels
POLL_MS = 150


class Desktop:
    """One script's clock, log, screenshots and waits.

    ``tag`` starts each log line; a wait gives up ``give_up_s`` seconds after the start with
    ``give_up(label)`` (default: a log line, ``failed_<label>.png`` and exit code 1). ``screenshot``:
    "screen" (ImageMagick's ``import`` of the whole X screen, dialogs included) or "window" (QGIS's
    main window grabbed by Qt). ``on_exit`` runs just before QGIS is asked to quit.
    """

    def __init__(
        self,
        tag: str,
        give_up_s: float,
        screenshot: str = "screen",
        give_up: Callable[[str], None] | None = None,
        on_exit: Callable[[], None] | None = None,
    ):
        self.started = time.monotonic()
        self.tag = tag
        self.give_up_s = give_up_s
        self.screenshot = screenshot
        self.give_up = give_up or self._give_up
        self.on_exit = on_exit

    def say(self, message: str) -> None:
        print(f"[{self.tag} {time.monotonic() - self.started:5.1f}s] {message}", flush=True)

    def shoot(self, name: str) -> None:
        QApplication.processEvents()
        path = OUT_DIR / name
        if self.screenshot == "window":
            iface.mainWindow().grab().save(str(path))
        else:
            subprocess.run(["import", "-window", "root", str(path)], check=True)
        self.say(f"screenshot {path}")

    def exit(self, code: int) -> None:
        if self.on_exit is not None:
            self.on_exit()
        QApplication.instance().exit(code)

    def poll(self, condition: Callable[[], bool], then: Callable[[], None], label: str) -> None:
        """Calls ``then()`` once ``condition()`` holds, checked every POLL_MS without blocking QGIS."""
        if time.monotonic() - self.started > self.give_up_s:
            self.give_up(label)
        elif condition():
            then()
        else:
            QTimer.singleShot(POLL_MS, lambda: self.poll(condition, then, label))

    def _give_up(self, label: str) -> None:
        self.say(f"gave up waiting for: {label}")
        self.shoot(f"failed_{label.replace(' ', '_')}.png")
        self.exit(1)


def run_ended(owner) -> bool:
    """Whether ``owner.run`` (the panel's run, or its Accuracy section's) has started and ended."""
    return owner.run is not None and owner.run.status is not None


def open_tile(refresh: bool = False) -> QgsRasterLayer:
    """The main window placed on the screen (no window manager under Xvfb) and the Köln tile
    (``RS_OVSEG_DEMO_RASTER``) added and shown whole; ``refresh`` redraws the canvas at once."""
    iface.mainWindow().setGeometry(0, 0, *SCREEN)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    assert "rs_ovseg_qgis" in plugins, f"plugin not loaded; loaded: {sorted(plugins)}"
    layer = QgsRasterLayer(str(DEMO), "oem_koeln_50")
    assert layer.isValid(), f"cannot open {DEMO}"
    QgsProject.instance().addMapLayer(layer)
    iface.mapCanvas().setExtent(layer.extent())
    if refresh:
        iface.mapCanvas().refresh()
    return layer


def show_panel(dock_width_px: int, layers_width_px: int) -> QDockWidget:
    """The RS OVSeg panel shown and raised, the Browser hidden (the Layers panel gets the left side),
    both panels at the given widths in pixels."""
    window = iface.mainWindow()
    dock = window.findChild(QDockWidget, "RsOvsegDock")
    dock.show()
    dock.raise_()
    browser = window.findChild(QDockWidget, "Browser")
    if browser is not None:
        browser.hide()
    docks, widths = [dock], [dock_width_px]
    layers_panel = window.findChild(QDockWidget, "Layers")
    if layers_panel is not None:
        docks.append(layers_panel)
        widths.append(layers_width_px)
    window.resizeDocks(docks, widths, Qt.Orientation.Horizontal)
    return dock


def fill_panel(dock, layer: QgsRasterLayer, vocabulary: str, options: str) -> None:
    """The panel set to segment all of ``layer`` into ``vocabulary`` (one class a line, commas for
    synonyms; named "Köln land cover") with the engine options ``options`` (JSON)."""
    from rs_ovseg_qgis.core.vocabulary import Vocabulary

    dock.vocabulary_editor.set_vocabulary(Vocabulary.from_lines(vocabulary, "Köln land cover"))
    dock.layer_combo.setLayer(layer)
    dock.extent_widget.setOutputExtentFromUser(layer.extent(), layer.crs())
    dock.engine_options_edit.setText(options)


def add_labelled_polygons(
    layer: QgsRasterLayer,
    polygons: list[tuple[str, list[tuple[int, int]]]],
    path: Path,
    name: str,
    fill: str,
    outline_width: str,
) -> QgsVectorLayer:
    """``polygons`` ((class, corners in the raster's pixels (column, row))) written as a GeoPackage at
    ``path`` in ``layer``'s CRS with a ``class`` field, then added on top of the project as ``name``:
    yellow outlines of ``outline_width`` mm over ``fill`` ("r,g,b,a"), labelled with their class."""
    x0, y1 = layer.extent().xMinimum(), layer.extent().yMaximum()
    step = layer.rasterUnitsPerPixelX()
    memory = QgsVectorLayer(f"Polygon?crs={layer.crs().authid()}", path.stem, "memory")
    memory.dataProvider().addAttributes([QgsField("class", QVariant.String)])
    memory.updateFields()
    features = []
    for class_name, corners in polygons:
        ring = [QgsPointXY(x0 + col * step, y1 - row * step) for col, row in corners]
        feature = QgsFeature(memory.fields())
        feature.setAttributes([class_name])
        feature.setGeometry(QgsGeometry.fromPolygonXY([ring]))
        features.append(feature)
    memory.dataProvider().addFeatures(features)
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    QgsVectorFileWriter.writeAsVectorFormatV2(
        memory, str(path), QgsProject.instance().transformContext(), options
    )
    added = QgsVectorLayer(str(path), name, "ogr")
    symbol = QgsFillSymbol.createSimple(
        {"color": fill, "outline_color": "255,230,0", "outline_width": outline_width}
    )
    added.renderer().setSymbol(symbol)
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
    added.setLabeling(QgsVectorLayerSimpleLabeling(labels))
    added.setLabelsEnabled(True)
    project = QgsProject.instance()
    project.addMapLayer(added, False)
    project.layerTreeRoot().insertLayer(0, added)  # on top: its outlines over the classes
    return added
