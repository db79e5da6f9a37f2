"""SAM (segment-anything) automatic masks for ReSeg-CLIP: several parameter sets from one image
embedding per window, windows much larger than a CLIP crop, a per-window mask cache, and the faster
encoder attention, prompt decoder and mask resizing.

May import runtime/, errors and segment_anything; never methods/, pipeline/ or raster/ (ReSeg-CLIP reads
the id maps ``id_map.py`` paints).
"""
