"""SegEarth-OV (Li et al., CVPR 2025): training-free open-vocabulary segmentation of remote-sensing images.

Per crop: CLIP-normalise, pad to the patch size, dense CLIP with the SegEarth last block, SimFeatUp
(or any feature upsampler) to pixel resolution guided by the padded image, L2-normalise the features,
cosine against the queries, add λ × the class-token logits (global-bias subtraction with λ < 0), crop
the padding away. Without an upsampler the patch-level logits are resized bilinearly instead.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.clip.attention import ATTENTION_MODES, attention_mode
from engine.clip.dense import DenseClip, remove_padding
from engine.clip.templates import resolve_templates
from engine.errors import UserError
from engine.methods.base import TextQueryMethod
from engine.runtime.precision import resolve_dtype
from engine.upsamplers.cosine import upsampled_cosine_logits

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


#: Crops per upsampler call on the CPU. Its per-pixel range kernels are (crops, 224, 224, 121) float32
#: tensors (93 MiB for 4 crops, several alive at once); batch-sized ones left the kept heap fragmented,
#: so a 1000² tile peaked at 2.2-2.3 GB RSS, against 1.6-1.7 GB a crop at a time, for about the same
#: time. A GPU gets the whole batch: there the batch is what fills the device.
UPSAMPLER_CROPS_PER_CALL_CPU = 1


@dataclass
class SegEarthOVSettings:
    """SegEarth-OV's settings; defaults from the reference (configs/base_config.py, segearth_segmentor.py)."""

    #: last-block attention, one of engine.clip.attention.ATTENTION_MODES ("segearth" in the paper).
    attention: str = "segearth"
    #: λ of the global-bias subtraction: logits += λ · cosine(class token, query); 0 disables.
    global_bias: float = -0.3
    #: prompt templates: "imagenet" (OpenAI's 80, the reference), "remote-sensing", a file path, or a list.
    templates: str | list[str] = "imagenet"
    #: sliding-window crop edge and stride in working pixels.
    crop_size: int = 224
    crop_stride: int = 112
    #: multiplies the cosine logits before the softmax over queries (applied by the pipeline, not here).
    logit_scale: float = 50.0
    #: the reference first resizes an image to fit inside this edge (keeping aspect); used by the pipeline.
    max_image_edge: int = 448
    #: score below which a pixel is unclassified; 0.1 OpenEarthMap, 0.3 LoveDA, 0.4 iSAID (pipeline's job).
    probability_threshold: float = 0.0
    #: pixel mean/std of CLIP's training data, RGB in [0, 1].
    pixel_mean: tuple[float, float, float] = field(default=CLIP_MEAN)
    pixel_std: tuple[float, float, float] = field(default=CLIP_STD)

    def __post_init__(self) -> None:
        attention_mode(self.attention)
        if self.crop_size <= 0 or not 0 < self.crop_stride <= self.crop_size:
            raise UserError(
                f"crop stride must be between 1 and the crop size ({self.crop_size}), got {self.crop_stride}"
            )


def _check_upsampler_fits(
    model: nn.Module, upsampler: nn.Module | None, model_info: dict, upsampler_info: dict
):
    """Refuse an upsampler made for other features than the CLIP model's (it would fail mid-run)."""
    if upsampler is None:
        return
    feature_dim = getattr(model.visual, "output_dim", None)
    weight = dict(upsampler.named_parameters()).get("fixup_proj.1.weight")
    lifted = int(weight.shape[0]) if weight is not None else upsampler_info.get("dim")
    if feature_dim and lifted and int(feature_dim) != int(lifted):
        clip = model_info.get("name") or model_info.get("architecture") or "the CLIP model"
        up = upsampler_info.get("name") or "the upsampler"
        raise UserError(
            f"{up} lifts {lifted}-channel features, but {clip} gives {feature_dim}-channel features: "
            "choose an upsampler made for this CLIP model (--upsampler NAME|FILE), or --upsampler none"
        )


class SegEarthOV(TextQueryMethod):
    """SegEarth-OV on an open_clip ViT. Implements ``engine.methods.base.DenseMethod``.

    ``model``: open_clip CLIP (ViT); ``tokenizer``: its tokenizer; ``upsampler``: a module mapping
    (B, D, gh, gw) features and (B, 3, H, W) guidance to (B, D, gh·s, gw·s) (SimFeatUp: s = 16), or None
    for bilinear logits. ``dtype``: the backbone's dtype, a torch dtype or a name ("float32", "bfloat16",
    "float16", or "auto": ``engine.runtime.precision.choose_dtype``, bfloat16 where the device has
    fast bf16 matrix units); the model and upsampler are moved to ``device`` in place (the upsampler keeps
    float32 weights and runs its large products in ``dtype``, see
    ``engine.upsamplers.cosine.upsampled_cosine_logits``).
    """

    name = "segearth-ov"

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        settings: SegEarthOVSettings | None = None,
        upsampler: nn.Module | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
        model_info: dict | None = None,
        upsampler_info: dict | None = None,
    ):
        _check_upsampler_fits(model, upsampler, model_info or {}, upsampler_info or {})
        self.settings = settings or SegEarthOVSettings()
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer
        self.templates = resolve_templates(self.settings.templates)
        self.dense = DenseClip(self.model.visual, self.settings.attention)
        # The upsampler's weights stay float32: its softmaxes, the per-crop basis and the cosines run in
        # float32, its large products (adaptive convolution, learned kernel correction) in self.dtype.
        self.upsampler = upsampler.to(device=self.device, dtype=torch.float32).eval() if upsampler else None
        self.model_info = dict(model_info or {})
        self.upsampler_info = dict(upsampler_info or {})
        if self.upsampler is None:
            log.warning("SegEarth-OV without a feature upsampler: patch logits are resized bilinearly")
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(self.settings.pixel_mean, device=self.device).view(shape) * 255
        self._std = torch.tensor(self.settings.pixel_std, device=self.device).view(shape) * 255
        self.queries: list[str] = []
        self.query_features: torch.Tensor | None = None

    def normalise(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) uint8 RGB -> CLIP-normalised float32."""
        return (crops.to(self.device, torch.float32) - self._mean) / self._std

    @torch.no_grad()
    def crop_outputs(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(patch logits without the global bias (B, Q, h, w), class-token logits (B, Q)), both float32."""
        if self.query_features is None:
            raise RuntimeError("call set_queries() before crop_logits()")
        if crops.dim() != 4 or crops.shape[1] != 3:
            raise ValueError(f"crops must be (B, 3, h, w) RGB, got {tuple(crops.shape)}")
        images = self.normalise(crops)
        features = self.dense(images.to(self.dtype))
        text = self.query_features
        cls_logits = F.normalize(features.cls.float(), dim=-1) @ text.float().T
        padded_size = features.padded.shape[-2:]
        if self.upsampler is not None:
            patches, guidance, text = features.patches.float(), features.padded.float(), text.float()
            step = UPSAMPLER_CROPS_PER_CALL_CPU if patches.device.type == "cpu" else max(1, len(patches))
            logits = torch.cat(
                [
                    upsampled_cosine_logits(
                        self.upsampler,
                        patches[i : i + step],
                        guidance[i : i + step],
                        text,
                        padded_size,
                        compute_dtype=self.dtype,
                    )
                    for i in range(0, len(patches), step)
                ]
            )
        else:
            patches = F.normalize(features.patches.float(), dim=1)
            logits = torch.einsum("bdhw,qd->bqhw", patches, text.float())
            logits = F.interpolate(logits, size=padded_size, mode="bilinear", align_corners=False)
        return remove_padding(logits, features.padding).contiguous(), cls_logits

    def crop_logits(self, crops: torch.Tensor) -> torch.Tensor:
        logits, cls_logits = self.crop_outputs(crops)
        if self.settings.global_bias:
            logits = logits + self.settings.global_bias * cls_logits[:, :, None, None]
        return logits

    def describe(self) -> dict:
        settings = asdict(self.settings)
        if isinstance(settings["templates"], Path):
            settings["templates"] = str(settings["templates"])
        settings["pixel_mean"] = list(settings["pixel_mean"])
        settings["pixel_std"] = list(settings["pixel_std"])
        upsampler = dict(self.upsampler_info)
        if self.upsampler is None:
            upsampler.setdefault("upsampler", "bilinear (no weights)")
            upsampler.setdefault(
                "note",
                "no SimFeatUp weights: patch logits resized bilinearly; results are coarser than the paper's",
            )
        else:
            upsampler.setdefault("upsampler", type(self.upsampler).__name__)
        return {
            "method": self.name,
            "settings": settings,
            "attention_description": ATTENTION_MODES[self.settings.attention.lower()].description,
            "template_count": len(self.templates),
            "queries": list(self.queries),
            "model": {
                **self.model_info,
                "patch_size": self.dense.patch_size,
                "embed_dim": None if self.query_features is None else int(self.query_features.shape[1]),
            },
            "upsampler": upsampler,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }
