"""GDAL raster input and output: windows, bands and the stretch, grids and resampling to the working
grid, output paths, GeoTIFF writing with colour tables, the JSON sidecar, GDAL's block cache. Knows
nothing of CLIP.

May import errors, vocabulary (names and colours) and runtime/; never methods/ or models/.
Exception today: ``sampling.py`` takes its axis sampling from ``pipeline.tiling``.
"""
