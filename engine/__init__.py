"""RS OVSeg engine: training-free open-vocabulary segmentation of remote-sensing rasters.

Importing this package is cheap (no torch): the plugin and the interpreter's start-up hook import it.
"""

__version__ = "0.1.0"
