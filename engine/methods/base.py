"""The contract every segmentation method fulfils; the pipeline relies on exactly this."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class DenseMethod(Protocol):
    """Turns RGB crops into per-query logits. Array in, array out: no GDAL, no files.

    Attributes:
        name: method identifier, e.g. "segearth-ov".
        crop_size: crop edge in working pixels (SegEarth-OV: 224).
        crop_stride: sliding-window stride in working pixels (SegEarth-OV: 112).
    """

    name: str
    crop_size: int
    crop_stride: int

    def set_queries(self, queries: list[str]) -> None:
        """Compute (or fetch from cache) the embeddings of ``queries``; their order is the channel order."""
        ...

    def crop_logits(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) uint8 RGB crops at working resolution, h, w <= crop_size (edge crops may be smaller)
        -> (B, Q, h, w) float32 raw logits per query: cosine similarity including any global-bias term,
        not yet multiplied by a logit scale."""
        ...

    def describe(self) -> dict:
        """Every setting plus model and upsampler information, JSON-serialisable, for the run's sidecar."""
        ...
