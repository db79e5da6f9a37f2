"""Plugin logic without widgets: engine client and shared service, set-up, settings, capture,
estimates, run requests, results, styling and polygons. Never imports torch or the engine.

May import definitions, qgis.core and qgis.PyQt's QtCore/QtGui; never ui/. The run objects
(``segment_run``, ``assess_run``) load processing/'s algorithms lazily, to run them in a QgsTask.
"""
