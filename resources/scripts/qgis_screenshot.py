"""Run by ``qgis --code`` under Xvfb: open the plugin's panel, take a screenshot, quit QGIS."""

import os
import subprocess

from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QDockWidget
from qgis.utils import iface, plugins

OUT = os.environ["RS_OVSEG_SCREENSHOT"]


def show_panel():
    assert "rs_ovseg_qgis" in plugins, f"plugin not loaded; loaded: {sorted(plugins)}"
    dock = iface.mainWindow().findChild(QDockWidget, "RsOvsegDock")
    dock.show()
    dock.raise_()
    QTimer.singleShot(3000, take_screenshot)


def take_screenshot():
    QApplication.processEvents()
    subprocess.run(["import", "-window", "root", OUT], check=True)
    print(f"screenshot written to {OUT}")
    QApplication.instance().exit(0)


QTimer.singleShot(4000, show_panel)
