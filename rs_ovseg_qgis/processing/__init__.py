"""Processing provider and algorithms (``rs_ovseg:segment`` and the others): the same work as the
dock, for batch mode, the modeller and ``qgis_process``.

May import core/ and definitions; never ui/ or the engine (it talks to the worker through core/).
"""
