"""Plugin entry object: adds the action, the dock and the Processing provider, and removes them again."""

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .core import engine_service
from .core.paths import ICON_PATH
from .processing.provider import RsOvsegProvider
from .ui.dock import RsOvsegDock

MENU = "&RS OVSeg"


class RsOvsegPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.actions: list[QAction] = []
        self.dock: RsOvsegDock | None = None
        self.provider: RsOvsegProvider | None = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API)
        if self.provider is None:
            self.provider = RsOvsegProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS API)
        self.initProcessing()
        self.dock = RsOvsegDock(self.iface.mainWindow(), self.iface)
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        toggle = self.add_action("RS OVSeg", self.dock.toggleViewAction().trigger, checkable=False)
        toggle.setToolTip("Show or hide the RS OVSeg panel")

    def add_action(self, text: str, callback, checkable: bool = False) -> QAction:
        action = QAction(QIcon(str(ICON_PATH)), text, self.iface.mainWindow())
        action.setCheckable(checkable)
        action.triggered.connect(callback)
        self.iface.addToolBarIcon(action)
        self.iface.addPluginToRasterMenu(MENU, action)
        self.actions.append(action)
        return action

    def unload(self) -> None:
        for action in self.actions:
            self.iface.removePluginRasterMenu(MENU, action)
            self.iface.removeToolBarIcon(action)
            action.deleteLater()
        self.actions.clear()
        if self.dock is not None:
            self.dock.shutdown()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        engine_service.shutdown()  # the worker process ends with the plugin
