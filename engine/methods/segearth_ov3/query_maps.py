"""One score map per (crop, query) pair from SAM 3's head outputs, as SegEarth-OV3 combines them.

For a pair (its crop h × w pixels):
- object score s_i = sigmoid(object logit i) × p, with p = sigmoid(presence logit);
- instances: objects with s_i > confidence threshold; instance map = max_i s_i · sigmoid(mask_i), the
  mask logits resized bilinearly to h × w first (0 where no object is kept);
- semantic map = sigmoid(semantic logits resized to h × w);
- map = max(instance map, semantic map) × p.
Each part can be switched off (``use_instances``, ``use_semantic``, ``use_presence``), as in the
reference. The presence score enters the instance part twice (in s_i and in the final product): the
reference does so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.methods.segearth_ov3.grounding import GroundingOutput

#: Kept instance masks resized at once (each h × w float32): bounds memory when many objects pass.
INSTANCES_PER_RESIZE = 16


def pair_maps(
    out: GroundingOutput,
    size: tuple[int, int],
    *,
    use_semantic: bool = True,
    use_presence: bool = True,
) -> torch.Tensor:
    """(N, h, w) float32 maps for the N pairs of ``out`` at crop ``size`` (h, w). The instance part comes
    from ``out.kept_masks`` (the objects above the confidence threshold; none when not computed)."""
    n = out.object_logits.shape[0]
    presence = out.presence_logits.float().sigmoid()
    maps = torch.zeros((n, *size), dtype=torch.float32, device=out.object_logits.device)
    if out.kept_masks is not None:
        scores = out.object_scores()
        for pair, (objects, masks) in enumerate(zip(out.kept_objects, out.kept_masks)):
            for start in range(0, len(objects), INSTANCES_PER_RESIZE):
                chunk = slice(start, start + INSTANCES_PER_RESIZE)
                resized = F.interpolate(
                    masks[chunk].float()[:, None], size=size, mode="bilinear", align_corners=False
                ).sigmoid()
                weighted = resized[:, 0] * scores[pair, objects[chunk]][:, None, None]
                maps[pair] = torch.maximum(maps[pair], weighted.amax(0))
    if use_semantic:
        semantic = F.interpolate(out.semantic.float(), size=size, mode="bilinear", align_corners=False)
        maps = torch.maximum(maps, semantic[:, 0].sigmoid())
    if use_presence:
        maps = maps * presence[:, None, None]
    return maps
