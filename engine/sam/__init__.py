"""SAM (segment-anything) automatic masks for ReSeg-CLIP: several parameter sets from one image
embedding per window, windows much larger than a CLIP crop, and a per-window mask cache."""
