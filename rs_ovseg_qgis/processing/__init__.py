"""Processing provider and algorithms: the same work as the dock, for batch, modeller and qgis_process."""
