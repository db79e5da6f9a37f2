"""A ``SamPredictor`` that computes each image's embedding once and hands it to every mask generator.

segment-anything's ``SamAutomaticMaskGenerator`` calls ``predictor.set_image(crop)`` for the whole
window and for each crop-layer crop, and ``reset_image()`` after each. When several generators (one per
parameter set) share one of these predictors, the second and later ``set_image`` calls with the same
pixels restore the stored embedding instead of running the encoder again. The decoder then sees exactly
the features it would have computed itself, so the masks are identical to separate runs.
"""

from __future__ import annotations

import hashlib

import numpy as np
from segment_anything import SamPredictor

from engine.sam.stats import SegmentationCost


def _content_key(image: np.ndarray, image_format: str) -> tuple:
    digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()
    return (image.shape, str(image.dtype), image_format, digest)


class SharedEmbeddingPredictor(SamPredictor):
    """SamPredictor with a per-window store of image embeddings, keyed by the exact pixels."""

    def __init__(self, sam_model, cost: SegmentationCost) -> None:
        super().__init__(sam_model)
        self.cost = cost
        self._stored: dict[tuple, tuple] = {}

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        key = _content_key(image, image_format)
        stored = self._stored.get(key)
        if stored is None:
            super().set_image(image, image_format)
            self.cost.sam_encoder_passes += 1
            self._stored[key] = (self.features, self.original_size, self.input_size)
            return
        self.reset_image()
        self.features, self.original_size, self.input_size = stored
        self.is_image_set = True

    def forget_embeddings(self) -> None:
        """Drop stored embeddings (call when a window is done: ViT-H features are 4 MB per image)."""
        self._stored.clear()
        self.reset_image()
