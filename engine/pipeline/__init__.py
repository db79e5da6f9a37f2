"""The run itself: raster in, raster out — tile plan, crop logits, kept logits, scoring, progress.

``segment.py`` drives a run; ``tiling.py`` is its geometry; the rest are the stages it calls.
May import runtime/, raster/, methods/ (through the registry), vocabulary and errors; nothing imports it
but cli/ and bench/ (and raster/ for the progress types).
"""
