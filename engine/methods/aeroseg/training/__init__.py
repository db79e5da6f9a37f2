"""Training AerOSeg on labelled imagery: labels (raster or polygons) onto the imagery grid, crops that
see labelled pixels, BCE over the queries (+ back-projection), AdamW with a cosine schedule, held-out
validation, checkpoints that resume bit-for-bit, and the final model file."""
