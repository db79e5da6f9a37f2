"""A trained AerOSeg as the pipeline's ``DenseMethod``: crops in, per-query probabilities out.

Windows of the model's crop size slide with stride ⅔ of the crop by default (CAT-Seg's ⅓ overlap); an
edge window smaller than the crop is padded with black and cut back. With the global view (the default,
as CAT-Seg's inference), the pipeline hands over window-blocks instead (``spec.block_geometry``): each
block's windows are averaged, then averaged half-and-half with the whole block resized to one window.
The maps are sigmoid probabilities (BCE-trained binary maps per query), so the threshold kind is
"score". Any query names are allowed: the class refinement attends across whatever vocabulary it gets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from engine.errors import UserError
from engine.methods.aeroseg.spec import block_geometry, window_stride


@dataclass(frozen=True)
class AerOSegSegmentSettings:
    crop_stride: int | None = None  # None: crop − crop/3 (⅓ overlap) [C]
    global_view: bool = True  # CAT-Seg's global view, per window-block (spec.block_geometry) [C]
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
        self.window = int(metadata.get("crop") or model.arch.crop_size)  # the model's input edge
        stride = window_stride(self.window, self.settings.crop_stride)
        if not 0 < stride <= self.window:
            raise UserError(
                f"--crop-stride must be between 1 and the model's crop ({self.window}), got {stride}"
            )
        self.window_stride = stride
        # What the pipeline slides over its global grid: windows, or window-blocks with the global view.
        self.crop_size, self.crop_stride = block_geometry(self.window, stride, self.settings.global_view)
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
        images = crops.to(self.device, torch.float32)
        if not self.settings.global_view:
            return self._window_probabilities(images)
        return self._block_probabilities(images)

    def _model_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, window, window) float pixels → (B, Q, window, window) sigmoid probabilities."""
        bf16 = self.device.type == "cuda" and self.dtype == torch.bfloat16
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = self.model(images, self.text).logits
        size = (self.window, self.window)
        return torch.sigmoid(F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False))

    def _window_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """One window per crop, h, w <= window: padded with black to the window, cut back."""
        height, width = images.shape[-2:]
        edge = self.window
        if (height, width) != (edge, edge):
            images = F.pad(images, (0, edge - width, 0, edge - height))
        return self._model_probabilities(images)[..., :height, :width].contiguous()

    def _block_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Window-blocks (B, 3, h, w), h, w <= window + stride: the mean of the block's windows (on the
        stride lattice, edge windows padded), averaged with the global view (the block bilinearly resized
        to one window, its probabilities resized back) — CAT-Seg's ``(sliding + global) / 2``."""
        height, width = images.shape[-2:]
        total = images.new_zeros((images.shape[0], len(self.queries), height, width))
        count = images.new_zeros((height, width))
        for top in _window_starts(height, self.window, self.window_stride):
            for left in _window_starts(width, self.window, self.window_stride):
                bottom, right = min(top + self.window, height), min(left + self.window, width)
                total[..., top:bottom, left:right] += self._window_probabilities(
                    images[..., top:bottom, left:right]
                )
                count[top:bottom, left:right] += 1
        edge = (self.window, self.window)
        whole = F.interpolate(images, size=edge, mode="bilinear", align_corners=False)
        overview = F.interpolate(
            self._model_probabilities(whole), size=(height, width), mode="bilinear", align_corners=False
        )
        return ((total / count + overview) / 2).contiguous()

    def describe(self) -> dict:
        meta = self.metadata
        return {
            "method": self.name,
            "settings": {
                **asdict(self.settings),
                "crop_size": self.crop_size,
                "crop_stride": self.crop_stride,
                "window": self.window,
                "window_stride": self.window_stride,
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


def _window_starts(extent: int, window: int, stride: int) -> list[int]:
    """Starts of the windows covering ``extent`` pixels on the stride lattice: 0, stride, … until one
    reaches the end (a block of window + stride pixels has two per axis)."""
    starts = [0]
    while starts[-1] + window < extent:
        starts.append(starts[-1] + stride)
    return starts
