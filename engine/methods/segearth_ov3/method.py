"""SegEarth-OV3 (arXiv 2512.08730): training-free open-vocabulary segmentation with SAM 3's text prompts.

Per crop batch: resize each crop to SAM 3's input (uint8, antialiased bilinear, as the reference's
processor), normalise to [-1, 1], run the image backbone once, then ground every query on every crop in
batched (crop, query) pairs (``grounding.BatchedGrounding``) and turn each pair's heads into a score map
in [0, 1] (``query_maps.pair_maps``). The maps are already probabilities: the pipeline takes the max over
synonyms and the argmax without a softmax (``logits_are_probabilities``), and pixels below the
probability threshold are unclassified.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from engine.errors import UserError
from engine.methods.segearth_ov3.architecture import Sam3Architecture
from engine.methods.segearth_ov3.grounding import BatchedGrounding, TextFeatures
from engine.methods.segearth_ov3.query_maps import pair_maps
from engine.methods.segearth_ov3.settings import SegEarthOV3Settings
from engine.runtime.precision import resolve_dtype

log = logging.getLogger(__name__)

#: (crop, query) pairs per grounding call when the settings leave it open. A full-size pair holds about
#: 0.3 GB of activations (the pixel decoder's maps at 288²). On a CPU one pair's products are already
#: large (5184 image tokens × 256): 4 pairs per call ran no faster than the per-query loop on the 2-core
#: build machine (234 s against 224 s per window, within its load swings) and took 1.4 GB more, so the
#: CPU grounds one pair per call; a GPU needs the batch to fill the device.
PAIRS_PER_CALL = {"cpu": 1, "cuda": 32, "mps": 8}


def prepare_images(crops: torch.Tensor, resolution: int, device: torch.device) -> torch.Tensor:
    """(B, 3, h, w) uint8 RGB → (B, 3, R, R) float32 in [-1, 1]: the reference processor's transform
    (uint8 resize with antialiasing to R × R, scale to [0, 1], normalise with mean = std = 0.5)."""
    from torchvision.transforms.v2 import functional as TF

    images = crops.to(device)
    if images.dtype != torch.uint8:
        raise ValueError(f"crops must be uint8 RGB, got {images.dtype}")
    images = TF.resize(images, [resolution, resolution], antialias=True)
    return (images.float() / 255.0 - 0.5) / 0.5


class SegEarthOV3:
    """SegEarth-OV3 on a SAM 3 image model. Implements ``engine.methods.base.DenseMethod``.

    ``model``: ``sam3.model.sam3_image.Sam3Image`` (see ``architecture.build_image_model``);
    ``dtype``: compute precision: float32, or bfloat16/float16 through autocast (weights stay float32),
    "auto" as ``engine.runtime.precision.choose_dtype``.
    """

    name = "segearth-ov3"
    #: the maps are probabilities already: the pipeline scores them without a softmax.
    logits_are_probabilities = True
    logit_scale = 1.0

    def __init__(
        self,
        model: torch.nn.Module,
        arch: Sam3Architecture,
        settings: SegEarthOV3Settings | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
        model_info: dict | None = None,
    ) -> None:
        self.settings = settings or SegEarthOV3Settings()
        self.arch = arch
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(self.device).eval()
        self.grounding = BatchedGrounding(self.model, self.device)
        self.model_info = dict(model_info or {})
        self.queries: list[str] = []
        self.text: TextFeatures | None = None
        self.pairs_per_call = self.settings.pairs_per_call or PAIRS_PER_CALL.get(self.device.type, 4)
        # Backbone features (4 pyramid levels and their position encodings at 256 channels) per crop.
        self.bytes_per_crop = 2 * 4 * arch.d_model * sum((arch.mask_size // 2**k) ** 2 for k in range(4))

    @property
    def crop_size(self) -> int:
        return self.settings.crop_size

    @property
    def crop_stride(self) -> int:
        return self.settings.crop_stride

    @property
    def probability_threshold(self) -> float:
        return self.settings.probability_threshold

    def autocast(self):
        """bf16/fp16 autocast (the reference runs bf16 autocast on CUDA); nothing for float32."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def set_queries(self, queries: list[str], literal: list[bool] | None = None) -> None:
        """SAM 3 is prompted with each query's text as written (no templates), so a whole-sentence
        prompt (``literal``) needs nothing different."""
        if not queries:
            raise UserError("the vocabulary is empty: give at least one class name")
        self.queries = list(queries)
        with self.autocast():
            self.text = self.grounding.encode_text(self.queries)

    @torch.inference_mode()
    def crop_logits(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) uint8 → (B, Q, h, w) float32 score maps in [0, 1]."""
        if self.text is None:
            raise RuntimeError("call set_queries() before crop_logits()")
        if crops.dim() != 4 or crops.shape[1] != 3:
            raise ValueError(f"crops must be (B, 3, h, w) RGB, got {tuple(crops.shape)}")
        b, q = crops.shape[0], len(self.queries)
        size = (int(crops.shape[2]), int(crops.shape[3]))
        out = torch.empty((b, q, *size), dtype=torch.float32, device=self.device)
        images = prepare_images(crops, self.arch.resolution, self.device)
        if self.settings.per_query_loop:
            return self._per_query_loop(images, size, out)
        with self.autocast():
            state = self.grounding.encode_images(images)
            crop_ids = torch.arange(b, device=self.device).repeat_interleave(q)
            query_ids = torch.arange(q, device=self.device).repeat(b)
            for start in range(0, b * q, self.pairs_per_call):
                pairs = slice(start, start + self.pairs_per_call)
                heads = self._ground(state, self.text, crop_ids[pairs], query_ids[pairs])
                maps = self._maps(heads, size)
                out.view(b * q, *size)[pairs] = maps
                del heads, maps
        return out

    def _maps(self, heads, size) -> torch.Tensor:
        return pair_maps(
            heads, size, use_semantic=self.settings.use_semantic, use_presence=self.settings.use_presence
        )

    def _ground(self, state, text, crop_ids, query_ids):
        s = self.settings
        confidence = s.confidence_threshold if s.use_instances else None
        return self.grounding.ground(state, text, crop_ids, query_ids, confidence)

    def _per_query_loop(self, images: torch.Tensor, size, out: torch.Tensor) -> torch.Tensor:
        """The reference's order of work: per crop, its image state once, then each query alone (its
        text encoded again, as ``Sam3Processor.set_text_prompt`` does, and grounded as one pair)."""
        one = torch.zeros(1, dtype=torch.long, device=self.device)
        with self.autocast():
            for b in range(len(images)):
                state = self.grounding.encode_images(images[b : b + 1])
                for q, query in enumerate(self.queries):
                    text = self.grounding.encode_text([query])
                    out[b, q] = self._maps(self._ground(state, text, one, one), size)[0]
        return out

    def describe(self) -> dict:
        return {
            "method": self.name,
            "settings": self.settings.to_json(),
            "queries": list(self.queries),
            "model": {**self.model_info, "architecture": self.arch.to_json()},
            "pairs_per_call": self.pairs_per_call,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "scoring": "score maps in [0, 1]: max over synonyms, argmax, no softmax",
        }
