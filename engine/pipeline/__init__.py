"""The run itself: raster in, raster out — tile plan, crop logits, kept logits, scoring, progress.

``segment.py`` drives a run; ``tiling.py`` is its geometry; the rest are the stages it calls.
May import runtime/, raster/, vocabulary and errors; the method arrives as an object (cli/ builds it
through the registry). Imported by cli/, bench/, options/ (requests and settings) and assess/ (progress
types).
"""
