"""SAM automatic masks for one window under several parameter sets, from one embedding per image.

Per window, segment-anything's generator with ``crop_n_layers = 1`` encodes the window and its 2 × 2
crops: 5 encoder passes. The reference runs one generator per parameter set on every 224² tile, each
re-encoding the same pixels: 4 × 5 = 20 passes per tile. Here every parameter set's generator shares a
:class:`SharedEmbeddingPredictor`, so a window costs 1 + (crop-layer crops) passes whatever the number of
sets, and windows hold many tiles. Sets with the same point grid and crop layers also share each prompt-
decoder run (:class:`SharedCropDecoder`): the reference sets need 2 decoder runs per batch, not 4.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator

from engine.sam.id_map import paint_id_map
from engine.sam.parameter_sets import SamParameterSet
from engine.sam.rle import shared_rles
from engine.sam.shared_decoder import SharedCropDecoder
from engine.sam.shared_embedding import SharedEmbeddingPredictor
from engine.sam.stats import SegmentationCost

#: Prompt points decoded together at most (segment-anything's default; memory vs. speed only).
POINTS_PER_BATCH = 64
#: Bound on mask logits held per decoder batch (points × 3 masks × window pixels; ~200 MB of float32):
#: on a 896² window 64 points would hold 616 MB of masks plus several working copies.
MASK_VALUES_PER_BATCH = 50_000_000


def points_per_batch_for(height: int, width: int) -> int:
    """Points per decoder batch for an (height, width) window, within MASK_VALUES_PER_BATCH."""
    return max(1, min(POINTS_PER_BATCH, MASK_VALUES_PER_BATCH // (3 * height * width)))


class EmptySafeMaskGenerator(SamAutomaticMaskGenerator):
    """segment-anything's generator, except that a window where no mask survives yields no masks, and
    that its crops may come from a :class:`SharedCropDecoder` shared with other parameter sets.

    Upstream, a crop with no surviving mask records its crop boxes as a 1-D empty tensor, and merging
    crops then fails with IndexError in ``box_area`` (e.g. on a uniform tile). Giving that empty tensor
    its proper (0, 4) shape lets the upstream code run on unchanged.
    """

    #: When set, this generator is member ``member`` of the decoder's group and takes its crops from it.
    shared_decoder: SharedCropDecoder | None = None
    member: int = 0

    def _process_batch(self, points, im_size, crop_box, orig_size):
        data = super()._process_batch(points, im_size, crop_box, orig_size)
        data["rles"] = shared_rles(data["rles"])  # merged without deep copies (engine.sam.rle)
        return data

    def _process_crop(self, image, crop_box, crop_layer_idx, orig_size):
        if self.shared_decoder is None:
            data = super()._process_crop(image, crop_box, crop_layer_idx, orig_size)
        else:
            data = self.shared_decoder.crop_data(self.member, image, crop_box, crop_layer_idx, orig_size)
        if len(data["rles"]) == 0:
            data["crop_boxes"] = torch.zeros((0, 4), dtype=torch.int64)
        return data


def generator_for(
    sam_model, params: SamParameterSet, shape: tuple[int, int], predictor=None
) -> EmptySafeMaskGenerator:
    """A generator for a window of ``shape`` (H, W) pixels, point grid scaled to keep the reference
    density; ``predictor`` (if given) replaces the generator's own, to share embeddings. The points per
    batch only bound memory: the masks do not depend on them."""
    generator = EmptySafeMaskGenerator(
        sam_model,
        points_per_side=params.points_per_side_for(max(shape)),
        points_per_batch=points_per_batch_for(*shape),
        pred_iou_thresh=params.pred_iou_thresh,
        stability_score_thresh=params.stability_score_thresh,
        crop_n_layers=params.crop_n_layers,
        crop_n_points_downscale_factor=params.crop_n_points_downscale_factor,
        min_mask_region_area=params.min_mask_region_area,
    )
    if predictor is not None:
        generator.predictor = predictor
    return generator


def decoder_group_key(params: SamParameterSet, shape: tuple[int, int]) -> tuple[int, int, int]:
    """What fixes the decoder's inputs for a set on a window of ``shape`` (H, W): sets with equal keys
    get identical decoder outputs and can share one decoder run."""
    return (
        params.points_per_side_for(max(shape)),
        params.crop_n_layers,
        params.crop_n_points_downscale_factor,
    )


class WindowMaskGenerator:
    """Id maps (one per requested parameter set) for RGB windows, sharing one embedding per image and,
    with ``share_decoder`` (the default), one prompt-decoder run per crop and batch among the sets that
    share a point grid and crop layers (see engine.sam.shared_decoder; the masks are the same)."""

    def __init__(
        self,
        sam_model,
        parameter_sets: Sequence[SamParameterSet],
        cost: SegmentationCost,
        *,
        share_decoder: bool = True,
    ) -> None:
        self.sam_model = sam_model
        self.parameter_sets = tuple(parameter_sets)
        self.cost = cost
        self.share_decoder = share_decoder
        self.predictor = SharedEmbeddingPredictor(sam_model, cost)

    def _generators(self, set_indices: Sequence[int], shape: tuple[int, int]) -> list[EmptySafeMaskGenerator]:
        generators = [
            generator_for(self.sam_model, self.parameter_sets[index], shape, self.predictor)
            for index in set_indices
        ]
        if not self.share_decoder:
            return generators
        groups: dict[tuple, list[EmptySafeMaskGenerator]] = {}
        for index, generator in zip(set_indices, generators):
            groups.setdefault(decoder_group_key(self.parameter_sets[index], shape), []).append(generator)
        # A set alone in its group takes the shared decoder too: its batches skip resizing masks that the
        # IoU filter drops, and encode run lengths faster (engine.sam.shared_decoder).
        for members in groups.values():
            decoder = SharedCropDecoder(members)
            for member, generator in enumerate(members):
                generator.shared_decoder, generator.member = decoder, member
        return generators

    @torch.no_grad()
    def id_maps(self, window: np.ndarray, set_indices: Sequence[int]) -> np.ndarray:
        """window: (H, W, 3) uint8 RGB. Returns (len(set_indices), H, W) int32 id maps (0 = uncovered)."""
        if window.ndim != 3 or window.shape[2] != 3 or window.dtype != np.uint8:
            raise ValueError(f"SAM needs an (H, W, 3) uint8 RGB window, got {window.shape} {window.dtype}")
        started = time.perf_counter()
        height, width = window.shape[:2]
        maps = np.zeros((len(set_indices), height, width), dtype=np.int32)
        try:
            for row, generator in enumerate(self._generators(set_indices, (height, width))):
                records = generator.generate(window)
                maps[row] = paint_id_map([r["segmentation"] for r in records], (height, width))
        finally:
            self.predictor.forget_embeddings()
            self.cost.sam_seconds += time.perf_counter() - started
        return maps
