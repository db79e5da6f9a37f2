"""Dense CLIP: patch-level features from open_clip vision towers (last-block attention modes, position
embeddings resized to the crop) and text queries (prompt templates, encoding, the on-disk embedding store).

May import runtime/, errors and ``models.cache`` (the store's home folder); never methods/, sam/,
pipeline/, raster/ or cli/.
"""
