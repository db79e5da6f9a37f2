"""ReSeg-CLIP internals: the per-block attention schedule, SAM id maps → patch ids → attention masks,
running an open_clip vision tower with a different attention mask in each block, and the factory that
builds the method with its SAM.

May import clip/, sam/, models/, runtime/, errors and ``methods.reseg_clip`` (the method the factory
builds); never the registry.
"""
