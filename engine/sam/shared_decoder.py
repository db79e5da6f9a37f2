"""One prompt-decoder run per crop for every parameter set that shares a point grid.

segment-anything's generator decodes each crop's point grid in batches and then filters each batch by
predicted IoU and stability score; box NMS within the crop follows, and small-region removal comes last.
Parameter sets that share the point grid and the crop layers (ReSeg-CLIP's sets 2–4) therefore get
identical decoder outputs — mask logits, predicted IoU, stability scores — and differ only in what they
keep. :class:`SharedCropDecoder` decodes each batch once, computes every per-mask quantity once for
the union of what the sets keep, and hands each set the subset (in upstream order) that its own filters
would have left. Each set's generator (``engine.sam.generator.EmptySafeMaskGenerator``) then runs
segment-anything's own crop merging and small-region post-processing, so its masks equal a separate
generator's.

Each batch also does less than upstream's for the same result: only masks that pass a member's IoU
filter are resized from 256² to the crop (upstream resizes all, then filters), and run lengths are
encoded in one pass over the batch (``engine.sam.rle.masks_to_rles``). A set that shares its grid with
no other uses a decoder of its own for these two savings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.utils.amg import (
    MaskData,
    batch_iterator,
    batched_mask_to_box,
    calculate_stability_score,
    is_box_near_crop_edge,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from torchvision.ops.boxes import batched_nms  # segment-anything's own NMS (engine.compat when no C ops)

from engine.sam.rle import masks_to_rles


def _decode_points(predictor, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-resolution mask logits (n, 3, 256, 256) and predicted IoUs (n, 3) of ``coords`` (n, 1, 2),
    one positive point per prompt, in the encoder's input frame: ``SamPredictor.predict_torch`` with
    ``multimask_output=True`` up to (not including) the resize to the image."""
    model = predictor.model
    labels = torch.ones(coords.shape[:2], dtype=torch.int, device=coords.device)
    sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    return model.mask_decoder(
        image_embeddings=predictor.features,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=True,
    )


def _select(data: MaskData, indices: torch.Tensor) -> MaskData:
    """A new MaskData holding the rows ``indices`` (int64, ascending) of every field."""
    picked = {}
    for key, value in data.items():
        if isinstance(value, torch.Tensor):
            picked[key] = value[indices.to(value.device)]
        elif isinstance(value, np.ndarray):
            picked[key] = value[indices.numpy()]
        else:
            picked[key] = [value[i] for i in indices.tolist()]
    return MaskData(**picked)


#: Masks resized and encoded at once: 16 float32 masks of an 896² window are ~50 MB, cache-friendly
#: compared with the whole batch, and large enough for the products to stay efficient.
MASKS_PER_GROUP = 16


class SharedCropDecoder:
    """Per-crop masks for a group of generators with one point grid, decoding each batch once.

    ``generators``: one per parameter set, all with the same point grids, points per batch, crop
    layers, crop overlap, box NMS threshold, stability offset and predictor (checked). They differ in
    ``pred_iou_thresh`` and ``stability_score_thresh`` (and in what they do after the crops)."""

    def __init__(self, generators: Sequence[SamAutomaticMaskGenerator]) -> None:
        if not generators:
            raise ValueError("a shared decoder needs at least one generator")
        lead = generators[0]
        for other in generators[1:]:
            same = (
                other.predictor is lead.predictor
                and len(other.point_grids) == len(lead.point_grids)
                and all(np.array_equal(a, b) for a, b in zip(other.point_grids, lead.point_grids))
                and (other.points_per_batch, other.crop_n_layers, other.crop_overlap_ratio)
                == (lead.points_per_batch, lead.crop_n_layers, lead.crop_overlap_ratio)
                and (other.box_nms_thresh, other.stability_score_offset)
                == (lead.box_nms_thresh, lead.stability_score_offset)
            )
            if not same:
                raise ValueError("generators sharing a decoder must share grid, batching and crop settings")
        self.lead = lead
        self.iou_thresholds = [g.pred_iou_thresh for g in generators]
        self.stability_thresholds = [g.stability_score_thresh for g in generators]
        # Per crop: the not-yet-collected MaskData of each generator (collected once, then dropped).
        self._pending: dict[tuple, list[MaskData | None]] = {}

    def crop_data(
        self, member: int, image: np.ndarray, crop_box: list[int], layer_idx: int, orig_size: tuple
    ) -> MaskData:
        """Generator ``member``'s masks of one crop, as its own ``_process_crop`` would return them."""
        key = (id(image), tuple(crop_box), layer_idx, tuple(orig_size))
        pending = self._pending.get(key)
        if pending is None or pending[member] is None:
            pending = self._decode_crop(image, crop_box, layer_idx, orig_size)
            self._pending[key] = pending
        data, pending[member] = pending[member], None
        if all(entry is None for entry in pending):
            del self._pending[key]
        return data

    def _decode_crop(
        self, image: np.ndarray, crop_box: list[int], layer_idx: int, orig_size: tuple
    ) -> list[MaskData]:
        lead = self.lead
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        cropped_size = cropped.shape[:2]
        lead.predictor.set_image(cropped)
        points_for_image = lead.point_grids[layer_idx] * np.array(cropped_size)[None, ::-1]
        per_member = [MaskData() for _ in self.iou_thresholds]
        for (points,) in batch_iterator(lead.points_per_batch, points_for_image):
            for data, batch in zip(per_member, self._decode_batch(points, cropped_size, crop_box, orig_size)):
                data.cat(batch)
        lead.predictor.reset_image()
        for data in per_member:
            keep = batched_nms(
                data["boxes"].float(),
                data["iou_preds"],
                torch.zeros(len(data["boxes"])),
                iou_threshold=lead.box_nms_thresh,
            )
            data.filter(keep)
            data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
            data["points"] = uncrop_points(data["points"], crop_box)
            data["crop_boxes"] = torch.tensor([crop_box for _ in range(len(data["rles"]))])
        return per_member

    def _decode_batch(
        self, points: np.ndarray, im_size: tuple, crop_box: list[int], orig_size: tuple
    ) -> list[MaskData]:
        """One decoder run; each member's batch data as upstream ``_process_batch`` leaves it. Every
        per-mask quantity (stability, box, RLE) depends on that mask alone, so computing it for the union
        of the members' survivors and then sub-selecting gives each member exactly its own values."""
        predictor = self.lead.predictor
        orig_h, orig_w = orig_size
        in_points = torch.as_tensor(
            predictor.transform.apply_coords(points, im_size), device=predictor.device
        )
        low_res, iou_preds = _decode_points(predictor, in_points[:, None, :])
        per_point = low_res.shape[1]
        data = MaskData(
            low_res=low_res.flatten(0, 1),
            iou_preds=iou_preds.flatten(0, 1),
            points=torch.as_tensor(points.repeat(per_point, axis=0)),
        )
        del low_res
        count = len(data["iou_preds"])
        # Upstream skips a filter whose threshold is 0 (so NaN scores survive it): so do we.
        keep_iou = [
            data["iou_preds"] > t if t > 0.0 else torch.ones(count, dtype=torch.bool)
            for t in self.iou_thresholds
        ]
        any_iou = torch.stack(keep_iou).any(dim=0)
        if not bool(any_iou.all()):
            data.filter(any_iou)
        keep_iou = [k[any_iou] for k in keep_iou]
        # Upstream resizes every mask of the batch to the crop (float32: 190 masks of an 896² window are
        # ~600 MB), then filters; here survivors go through resizing, stability, boxes and run lengths a
        # group at a time, and each mask alone decides its values, so the records are the same.
        rows, stability, boxes, rles = [], [], [], []
        keep: list[list[torch.Tensor]] = [[] for _ in keep_iou]
        survivors = len(data["iou_preds"])
        for first in range(0, survivors, MASKS_PER_GROUP):
            group = slice(first, min(first + MASKS_PER_GROUP, survivors))
            masks = predictor.model.postprocess_masks(
                data["low_res"][group, None], predictor.input_size, predictor.original_size
            )[:, 0]
            scores = calculate_stability_score(
                masks, predictor.model.mask_threshold, self.lead.stability_score_offset
            )
            member_keep = [
                k[group] & (scores >= t) if t > 0.0 else k[group]
                for k, t in zip(keep_iou, self.stability_thresholds)
            ]
            kept = torch.nonzero(torch.stack(member_keep).any(dim=0)).flatten()
            binary = (masks > predictor.model.mask_threshold)[kept]
            del masks
            group_boxes = batched_mask_to_box(binary)
            inside = ~is_box_near_crop_edge(group_boxes, crop_box, [0, 0, orig_w, orig_h])
            kept = kept[inside]
            rows.append(kept + first)
            stability.append(scores[kept])
            boxes.append(group_boxes[inside])
            rles.extend(masks_to_rles(uncrop_masks(binary[inside], crop_box, orig_h, orig_w)))
            for member, member_rows in zip(keep, member_keep):
                member.append(member_rows[kept])
        rows = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.int64)
        data = MaskData(
            iou_preds=data["iou_preds"][rows],
            points=data["points"][rows],
            stability_score=torch.cat(stability) if stability else torch.zeros(0),
            boxes=torch.cat(boxes) if boxes else torch.zeros(0, 4, dtype=torch.int64),
            rles=rles,
        )
        keep = [torch.cat(k) if k else torch.zeros(0, dtype=torch.bool) for k in keep]
        return [_select(data, torch.nonzero(k).flatten()) for k in keep]
