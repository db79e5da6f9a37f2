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

    def set_queries(self, queries: list[str], literal: list[bool] | None = None) -> None:
        """Compute (or fetch from cache) the embeddings of ``queries``; their order is the channel order.
        ``literal``: per query, True for a whole prompt to use as written (no templates)."""
        ...

    def crop_logits(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) uint8 RGB crops at working resolution, h, w <= crop_size (edge crops may be smaller)
        -> (B, Q, h, w) float32 raw logits per query: cosine similarity including any global-bias term,
        not yet multiplied by a logit scale."""
        ...

    def describe(self) -> dict:
        """Every setting plus model and upsampler information, JSON-serialisable, for the run's sidecar."""
        ...


class TextQueryMethod:
    """What the CLIP methods share: crop geometry from their settings and template-ensembled queries.

    Subclasses set ``settings`` (with ``crop_size`` and ``crop_stride``), ``model``, ``tokenizer``,
    ``templates`` and ``device``. Query embeddings stay float32 whatever the model's dtype: they are
    computed once per vocabulary and the cosine is taken in float32.
    """

    @property
    def crop_size(self) -> int:
        return self.settings.crop_size

    @property
    def crop_stride(self) -> int:
        return self.settings.crop_stride

    def set_queries(self, queries: list[str], literal: list[bool] | None = None) -> None:
        """Embed ``queries`` (their order is the channel order). ``literal``: per query, True for a whole
        prompt encoded as written instead of through the templates."""
        from engine.clip.text import encode_queries
        from engine.clip.text_store import default_text_store
        from engine.errors import UserError

        if not queries:
            raise UserError("the vocabulary is empty: give at least one class name")
        self.queries = list(queries)
        literal = list(literal) if literal is not None else [False] * len(queries)
        if len(literal) != len(queries):
            raise ValueError(f"{len(literal)} literal flags for {len(queries)} queries")
        groups = {False: list(self.templates), True: ["{}"]}  # "{}": the prompt itself
        features: dict[int, torch.Tensor] = {}
        for flag, templates in groups.items():
            positions = [i for i, is_literal in enumerate(literal) if is_literal == flag]
            if not positions:
                continue
            encoded = encode_queries(
                self.model,
                self.tokenizer,
                [self.queries[i] for i in positions],
                templates,
                device=self.device,
                dtype=torch.float32,
                store=default_text_store(),
            )
            features.update(zip(positions, encoded))
        self.query_features = torch.stack([features[i] for i in range(len(queries))])
