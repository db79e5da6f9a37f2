"""GDAL raster input and output. Knows nothing of CLIP."""
