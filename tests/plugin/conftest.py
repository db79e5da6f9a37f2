"""Plugin tests run inside pytest-qgis (a real QgsApplication, headless)."""

from __future__ import annotations

import gc

import pytest
from qgis.PyQt.QtCore import QCoreApplication, QEvent
from qgis.PyQt.QtWidgets import QApplication, QDockWidget


class RecordingIface:
    """pytest-qgis's iface, plus a record of what the plugin added to the interface.

    The real QGIS iface puts docks into the main window and actions into toolbars and menus; the mock
    does nothing for those, so this wrapper records them (and really docks the widget) to let tests
    check that ``unload`` takes away everything ``initGui`` added.
    """

    def __init__(self, iface):
        self._iface = iface
        self.toolbar_actions: list = []
        self.raster_menu_actions: list = []
        self.docks: list = []

    def __getattr__(self, name):
        return getattr(self._iface, name)

    def addToolBarIcon(self, action):  # noqa: N802 (QGIS API)
        self.toolbar_actions.append(action)

    def removeToolBarIcon(self, action):  # noqa: N802
        self.toolbar_actions.remove(action)

    def addPluginToRasterMenu(self, menu, action):  # noqa: N802
        self.raster_menu_actions.append((menu, action))

    def removePluginRasterMenu(self, menu, action):  # noqa: N802
        self.raster_menu_actions.remove((menu, action))

    def addDockWidget(self, area, dock):  # noqa: N802
        self._iface.mainWindow().addDockWidget(area, dock)
        self.docks.append(dock)

    def removeDockWidget(self, dock):  # noqa: N802
        self._iface.mainWindow().removeDockWidget(dock)
        self.docks.remove(dock)

    def live_docks(self, object_name: str) -> list:
        QApplication.sendPostedEvents(None, 0)  # let deleteLater() run
        return [
            d for d in self._iface.mainWindow().findChildren(QDockWidget) if d.objectName() == object_name
        ]


@pytest.fixture(scope="session", autouse=True)
def clean_up_before_qgis_exits(qgis_app):
    """Torn down before pytest-qgis exits QGIS (it depends on ``qgis_app``): the shared engine worker and
    its reader threads stop, widgets scheduled for deletion are deleted and Python's garbage is
    collected while Qt is still alive. Otherwise the interpreter's final collection destroys Qt
    wrappers after QGIS has gone, which crashes the process after every test passed."""
    yield
    from rs_ovseg_qgis.core import engine_service

    engine_service.shutdown()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture
def recording_iface(qgis_iface):
    return RecordingIface(qgis_iface)


@pytest.fixture
def provider(qgis_processing):
    """The RS OVSeg Processing provider registered for one test (``processing.run("rs_ovseg:…")``)."""
    from qgis.core import QgsApplication

    from rs_ovseg_qgis.processing.provider import RsOvsegProvider

    registry = QgsApplication.processingRegistry()
    provider = RsOvsegProvider()  # held here: the registry does not keep the Python object alive
    registry.addProvider(provider)
    yield provider
    registry.removeProvider(provider)
