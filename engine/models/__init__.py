"""Model architectures (open_clip and SAM, plus tiny test variants), the weights registry
(``registry.json``), the cache and offline folders, verified downloads, and checkpoint reading that never
runs pickled code.

May import upsamplers/ (to build upsampler architectures) and errors; never clip/, methods/, pipeline/.
"""
