"""A trained AerOSeg as the pipeline's ``DenseMethod``: crops in, per-query probabilities out.

Windows of the model's crop size slide over the pipeline's global crop grid (stride ⅔ of the crop by
default: CAT-Seg's ⅓ overlap); an edge crop smaller than the window is padded with black and cut back.
The maps are sigmoid probabilities (BCE-trained binary maps per query), so the threshold kind is
"score". Any query names are allowed: the class refinement attends across whatever vocabulary it gets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from engine.errors import UserError


@dataclass(frozen=True)
class AerOSegSegmentSettings:
    crop_stride: int | None = None  # None: crop − crop/3 (⅓ overlap) [C]
    probability_threshold: float = 0.0  # applied by the pipeline (threshold kind "score")


class AerOSegMethod:
    name = "aeroseg"

    def __init__(
        self,
        model,
        metadata: dict,
        settings: AerOSegSegmentSettings | None = None,
        *,
        device="cpu",
        dtype=None,
    ):
        self.model = model
        self.metadata = metadata
        self.settings = settings or AerOSegSegmentSettings()
        self.device = torch.device(device)
        self.dtype = dtype if isinstance(dtype, torch.dtype) else torch.float32
        self.crop_size = int(metadata.get("crop") or model.arch.crop_size)
        stride = self.settings.crop_stride or self.crop_size - self.crop_size // 3
        if not 0 < stride <= self.crop_size:
            raise UserError(
                f"--crop-stride must be between 1 and the model's crop ({self.crop_size}), got {stride}"
            )
        self.crop_stride = int(stride)
        self.queries: list[str] = []
        self.text: torch.Tensor | None = None

    @torch.no_grad()
    def set_queries(self, queries: list[str], literal: list[bool] | None = None) -> None:
        if not queries:
            raise UserError("the vocabulary is empty: give at least one class name")
        self.queries = list(queries)
        self.text = self.model.text_features(self.queries)

    @torch.no_grad()
    def crop_logits(self, crops: torch.Tensor) -> torch.Tensor:
        if self.text is None:
            raise RuntimeError("call set_queries() before crop_logits()")
        if crops.dim() != 4 or crops.shape[1] != 3:
            raise ValueError(f"crops must be (B, 3, h, w) RGB, got {tuple(crops.shape)}")
        height, width = crops.shape[-2:]
        edge = self.crop_size
        images = crops.to(self.device, torch.float32)
        if (height, width) != (edge, edge):
            images = F.pad(images, (0, edge - width, 0, edge - height))
        bf16 = self.device.type == "cuda" and self.dtype == torch.bfloat16
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = self.model(images, self.text).logits
        logits = F.interpolate(logits.float(), size=(edge, edge), mode="bilinear", align_corners=False)
        return torch.sigmoid(logits[..., :height, :width]).contiguous()

    def describe(self) -> dict:
        meta = self.metadata
        return {
            "method": self.name,
            "settings": {
                **asdict(self.settings),
                "crop_size": self.crop_size,
                "crop_stride": self.crop_stride,
            },
            "queries": list(self.queries),
            "model": {
                "name": meta.get("name"),
                "file": meta.get("file"),
                "architecture": meta.get("architecture", {}).get("name"),
                "trained_classes": meta.get("class_names"),
                "trained_steps": meta.get("steps"),
                "training_gsd": meta.get("training_gsd"),
                "validation_miou": (meta.get("validation") or {}).get("miou"),
                "base": meta.get("base"),
            },
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }
