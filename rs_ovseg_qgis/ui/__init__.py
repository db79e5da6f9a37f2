"""Widgets: the dock panel and its sections (vocabulary editor, input and extent, advanced, engine)
and the work estimate shown before a run.

May import core/, definitions, qgis.gui and qgis.PyQt; never processing/ or the engine. Long work goes to
core's tasks and the engine worker, never the main thread.
"""
