"""Segmentation methods: each turns RGB crops (arrays) into per-query logits; ``registry.py`` names the
methods, their options and builds each with its models. No GDAL here.

May import clip/, upsamplers/, sam/, models/, runtime/, vocabulary and errors; never pipeline/, raster/
or cli/. A method's module never imports the registry: the registry imports the methods.
"""
