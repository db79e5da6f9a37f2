"""Request options: ``SegmentOptions``, built once from the command line or a worker request.

Holds the typed options object and nothing else; it may import engine.errors, engine.methods.catalogue
(method specs, no torch) and, lazily, the pipeline and method registry it feeds.
"""

from engine.options.segment_options import SegmentOptions

__all__ = ["SegmentOptions"]
