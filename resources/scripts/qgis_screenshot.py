"""Run by ``qgis --code`` under Xvfb: open the plugin's panel, take a screenshot, quit QGIS."""

import os
import subprocess
import time
from pathlib import Path

from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import QApplication, QDockWidget
from qgis.utils import iface, plugins

OUT = os.environ["RS_OVSEG_SCREENSHOT"]


ESTIMATE_WAIT_S = 60
DEMO = Path(os.environ.get("RS_OVSEG_DEMO_RASTER", "/nonexistent"))


def show_panel():
    iface.mainWindow().setGeometry(0, 0, 1600, 1000)
    if DEMO.exists():
        layer = QgsRasterLayer(str(DEMO), "oem_koeln_50")
        QgsProject.instance().addMapLayer(layer)
        iface.mapCanvas().setExtent(layer.extent())
    assert "rs_ovseg_qgis" in plugins, f"plugin not loaded; loaded: {sorted(plugins)}"
    window = iface.mainWindow()
    browser = window.findChild(QDockWidget, "Browser")
    if browser is not None:  # room for the map: 1600 px without a window manager is all there is
        browser.hide()
    dock = window.findChild(QDockWidget, "RsOvsegDock")
    dock.show()
    dock.raise_()
    window.resizeDocks([dock], [430], Qt.Orientation.Horizontal)
    wait_for_estimate(dock, time.monotonic() + ESTIMATE_WAIT_S)


def wait_for_estimate(dock, give_up: float) -> None:
    """The screenshot once the panel shows the engine's estimate (or after ESTIMATE_WAIT_S)."""
    if dock.last_estimate is not None or time.monotonic() > give_up:
        QTimer.singleShot(1000, take_screenshot)
    else:
        QTimer.singleShot(200, lambda: wait_for_estimate(dock, give_up))


def take_screenshot():
    QApplication.processEvents()
    subprocess.run(["import", "-window", "root", OUT], check=True)
    print(f"screenshot written to {OUT}")
    QApplication.instance().exit(0)


QTimer.singleShot(4000, show_panel)
