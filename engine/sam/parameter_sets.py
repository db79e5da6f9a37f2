"""SAM automatic-mask-generator settings, one named set per ReSeg-CLIP mask granularity.

The reference (ReSeg-CLIP ``config.yml``) runs SAM's generator on 224 × 224 px tiles with four sets,
finest first; every set uses one extra crop layer. Point grids here are given *per reference tile*:
when SAM runs on a larger window, the grid is scaled so that the point density per pixel stays the
reference's (see :meth:`SamParameterSet.points_per_side_for`), which keeps the masks' meaning.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from engine.errors import UserError

#: Side of the tiles the reference ran SAM on (pixels); the point grids below are per such tile.
REFERENCE_TILE_PX = 224


@dataclass(frozen=True)
class SamParameterSet:
    name: str
    #: Points per side of the prompt grid over one reference tile (REFERENCE_TILE_PX pixels).
    points_per_side: int
    #: Masks whose predicted IoU is not above this are dropped (0..1).
    pred_iou_thresh: float
    #: Masks whose stability score is below this are dropped (0..1).
    stability_score_thresh: float
    #: Holes and islands smaller than this many pixels are removed from each mask.
    min_mask_region_area: int
    #: Extra crop layers (layer i cuts the window into 2^i × 2^i overlapping crops).
    crop_n_layers: int = 1
    #: Points per side shrink by this factor per crop layer (segment-anything's parameter).
    crop_n_points_downscale_factor: int = 2

    def __post_init__(self) -> None:
        problems = []
        if self.points_per_side < 1:
            problems.append(f"points_per_side must be at least 1 (got {self.points_per_side})")
        for field in ("pred_iou_thresh", "stability_score_thresh"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0) or math.isnan(value):
                problems.append(f"{field} must be between 0 and 1 (got {value})")
        if self.min_mask_region_area < 0:
            problems.append(
                f"min_mask_region_area must be 0 or more pixels (got {self.min_mask_region_area})"
            )
        if not 0 <= self.crop_n_layers <= 3:
            problems.append(f"crop_n_layers must be 0..3 (got {self.crop_n_layers})")
        if self.crop_n_points_downscale_factor < 1:
            problems.append(
                "crop_n_points_downscale_factor must be at least 1 "
                f"(got {self.crop_n_points_downscale_factor})"
            )
        elif self.points_per_side < self.crop_n_points_downscale_factor**self.crop_n_layers:
            # segment-anything would give the deepest crop layer an empty point grid.
            problems.append(
                f"points_per_side {self.points_per_side} leaves no points in crop layer {self.crop_n_layers} "
                f"(needs at least {self.crop_n_points_downscale_factor**self.crop_n_layers})"
            )
        if problems:
            raise UserError(f"SAM parameter set {self.name!r}: " + "; ".join(problems))

    def points_per_side_for(self, window_px: int) -> int:
        """Grid points per side for a window whose longer side is ``window_px`` pixels, keeping the
        reference's points-per-pixel density (never fewer than the per-tile count)."""
        return max(self.points_per_side, round(self.points_per_side * window_px / REFERENCE_TILE_PX))

    def as_dict(self) -> dict:
        return asdict(self)


#: ReSeg-CLIP's four sets, finest to coarsest: (points per side, predicted-IoU threshold,
#: stability threshold, minimum region area in px).
REFERENCE_PARAMETER_SETS: tuple[SamParameterSet, ...] = (
    SamParameterSet("fine", 4, 0.5, 0.5, 500),
    SamParameterSet("medium", 2, 0.6, 0.6, 500),
    SamParameterSet("coarse", 2, 0.5, 0.5, 1000),
    SamParameterSet("coarsest", 2, 0.5, 0.5, 2000),
)


def parameter_set_from_dict(data: dict, default_name: str) -> SamParameterSet:
    """A set from user JSON/YAML-like data; unknown keys and wrong types are UserErrors."""
    known = set(SamParameterSet.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise UserError(
            f"SAM parameter set {default_name!r}: unknown keys {sorted(unknown)}; known: {sorted(known)}"
        )
    try:
        return SamParameterSet(**{"name": default_name, **data})
    except TypeError as error:
        raise UserError(f"SAM parameter set {default_name!r}: {error}") from error
