"""classFactory → initGui → unload → initGui again, in real QGIS (pytest-qgis)."""

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, QEvent

import rs_ovseg_qgis
from rs_ovseg_qgis.processing.provider import PROVIDER_ID
from rs_ovseg_qgis.ui.dock import DOCK_OBJECT_NAME


def provider_registered() -> bool:
    return QgsApplication.processingRegistry().providerById(PROVIDER_ID) is not None


def flush_deletes():
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def test_init_gui_adds_action_dock_and_provider(qgis_app, recording_iface):
    plugin = rs_ovseg_qgis.classFactory(recording_iface)
    plugin.initGui()
    try:
        assert len(recording_iface.toolbar_actions) == 1
        assert [menu for menu, _ in recording_iface.raster_menu_actions] == ["&RS OVSeg"]
        assert len(recording_iface.live_docks(DOCK_OBJECT_NAME)) == 1
        assert provider_registered()
        provider = QgsApplication.processingRegistry().providerById(PROVIDER_ID)
        assert provider.name() == "RS OVSeg"
        assert not provider.icon().isNull()
    finally:
        plugin.unload()


def test_action_toggles_the_dock(qgis_app, recording_iface):
    plugin = rs_ovseg_qgis.classFactory(recording_iface)
    plugin.initGui()
    try:
        dock = recording_iface.live_docks(DOCK_OBJECT_NAME)[0]
        recording_iface.mainWindow().show()
        assert not dock.isVisible()
        recording_iface.toolbar_actions[0].trigger()
        assert dock.isVisible()
        recording_iface.toolbar_actions[0].trigger()
        assert not dock.isVisible()
    finally:
        plugin.unload()
        recording_iface.mainWindow().hide()


def test_unload_removes_everything_and_the_plugin_loads_again(qgis_app, recording_iface):
    for _cycle in range(2):
        plugin = rs_ovseg_qgis.classFactory(recording_iface)
        plugin.initGui()
        assert provider_registered()
        plugin.unload()
        flush_deletes()
        assert recording_iface.toolbar_actions == []
        assert recording_iface.raster_menu_actions == []
        assert recording_iface.live_docks(DOCK_OBJECT_NAME) == []
        assert not provider_registered()
