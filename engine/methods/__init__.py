"""Segmentation methods: each turns RGB crops (arrays) into per-query logits. No GDAL here."""
