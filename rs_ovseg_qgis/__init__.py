"""RS OVSeg QGIS plugin: open-vocabulary land-cover segmentation from a dock panel and Processing."""


def classFactory(iface):  # noqa: N802 (QGIS's required name)
    # Imported lazily so that QGIS only pays for the plugin when it is enabled.
    from .plugin import RsOvsegPlugin

    return RsOvsegPlugin(iface)
