"""The run itself: raster in, raster out — tile plan, crop logits, kept logits, scoring, progress.

``job.py`` runs a request end to end (options → validated job → method → run), ``segment.py`` drives a
run, ``tiling.py`` is its geometry; the rest are the stages they call. May import runtime/, raster/,
options/, methods/ (only ``job.py``, which builds the method through the registry), vocabulary and
errors. Imported by cli/, bench/, distributed/, options/ (requests and settings) and assess/.
"""
