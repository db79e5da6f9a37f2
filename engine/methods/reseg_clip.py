"""ReSeg-CLIP (Heidarianbaei et al., arXiv 2602.23869): SAM-guided hierarchical attention masking.

Per crop: CLIP-normalise, pad to the patch size, run the vision tower with each block's attention
restricted by the schedule (unrestricted / same SAM segment / self only; see
``engine.methods.reseg.schedule``), ln_post and proj on every token, upsample the patch features
bilinearly to pixels, L2-normalise, cosine against the queries.

SAM masks come from windows much larger than a crop. The pipeline calls :meth:`ResegClip.prepare_window`
once per read window with the window's pixels (at working resolution), then ``crop_logits(crops,
origins)`` with each crop's top-left (row, col) inside that window; every crop reads its segment ids
from the window's id maps. Without a prepared window (or without origins) each crop is its own SAM
window, the reference's structure. Id maps are cached per SAM window (process-wide, optionally on disk),
so changing the vocabulary costs no SAM time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.clip.dense import patch_padding, remove_padding
from engine.clip.templates import resolve_templates
from engine.errors import UserError
from engine.methods.base import TextQueryMethod
from engine.methods.reseg.attention_masks import additive_bias, allowed_from_patch_ids, self_only_allowed
from engine.methods.reseg.id_maps import OUTSIDE_ID, crop_id_maps, patch_majority_ids
from engine.methods.reseg.masked_blocks import masked_forward, num_heads, vision_depth
from engine.methods.reseg.schedule import (
    default_schedule,
    describe_schedule,
    parse_schedule,
    sam_sets_used,
)
from engine.methods.segearth_ov import CLIP_MEAN, CLIP_STD
from engine.sam.mask_cache import WindowMaskCache
from engine.sam.parameter_sets import REFERENCE_PARAMETER_SETS, SamParameterSet
from engine.sam.stats import SegmentationCost
from engine.sam.window_masks import DEFAULT_SAM_WINDOW_PX, SamWindowMasks
from engine.upsamplers.cosine import BilinearUpsampler, upsampled_cosine_logits

#: The reference's single prompt template (its config lists "Aerial photo of a {class} in the city").
RESEG_TEMPLATE = "Aerial photo of a {} in the city"

#: Id maps shared by every ReSeg-CLIP instance in this process (keys include the SAM settings), so a
#: new method object for a new vocabulary still finds the masks.
SHARED_MASK_CACHE = WindowMaskCache()


@dataclass
class ResegClipSettings:
    """ReSeg-CLIP's settings; defaults are the reference's (``config.yml``, ``infernce.py``)."""

    #: Prompt templates: a list, a set name of engine.clip.templates, or a file; the reference uses one.
    templates: str | list[str] = field(default_factory=lambda: [RESEG_TEMPLATE])
    #: Per-block attention schedule text (``"18*full,sam1,sam2,sam3,sam4,2*self"``); None = the
    #: reference pattern scaled to the model's depth (schedule.default_schedule).
    schedule: str | None = None
    #: SAM generator settings, finest first; schedule entry samK uses set K.
    parameter_sets: tuple[SamParameterSet, ...] = REFERENCE_PARAMETER_SETS
    #: CLIP crop edge and stride in working pixels: the reference tiles 224² without overlap.
    crop_size: int = 224
    crop_stride: int = 224
    #: Longest side of a SAM window in working pixels (several crops share one SAM run).
    sam_window_px: int = DEFAULT_SAM_WINDOW_PX
    #: Folder for the on-disk mask cache (None: memory only).
    mask_cache_dir: str | None = None
    #: The reference softmaxes raw cosines, i.e. a logit scale of 1 (applied by the pipeline).
    logit_scale: float = 1.0
    pixel_mean: tuple[float, float, float] = CLIP_MEAN
    pixel_std: tuple[float, float, float] = CLIP_STD

    def __post_init__(self) -> None:
        if self.crop_size <= 0 or not 0 < self.crop_stride <= self.crop_size:
            raise UserError(
                f"crop stride must be between 1 and the crop size ({self.crop_size}), got {self.crop_stride}"
            )
        if self.sam_window_px < self.crop_size:
            raise UserError(
                f"the SAM window ({self.sam_window_px} px) must be at least one crop ({self.crop_size} px)"
            )
        if not self.parameter_sets:
            raise UserError("ReSeg-CLIP needs at least one SAM parameter set")
        self.parameter_sets = tuple(self.parameter_sets)


class ResegClip(TextQueryMethod):
    """ReSeg-CLIP on an open_clip ViT and a segment-anything SAM. Implements ``DenseMethod`` plus the
    optional ``prepare_window`` hook."""

    name = "reseg-clip"

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        sam_model: nn.Module,
        settings: ResegClipSettings | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        model_info: dict | None = None,
        sam_info: dict | None = None,
        mask_cache: WindowMaskCache | None = None,
    ) -> None:
        self.settings = settings or ResegClipSettings()
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.visual = self.model.visual
        self.tokenizer = tokenizer
        self.templates = resolve_templates(self.settings.templates)
        patch = self.visual.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, tuple | list) else patch)
        depth = vision_depth(self.visual)
        n_sets = len(self.settings.parameter_sets)
        if self.settings.schedule is None:
            self.schedule = default_schedule(depth, n_sets)
        else:
            self.schedule = parse_schedule(self.settings.schedule, depth, n_sets)
        self.sam_sets = sam_sets_used(self.schedule)
        self.model_info = dict(model_info or {})
        self.sam_info = dict(sam_info or {})
        self.cost = SegmentationCost()
        if mask_cache is None:
            if self.settings.mask_cache_dir:
                mask_cache = WindowMaskCache(self.settings.mask_cache_dir)
            else:
                mask_cache = SHARED_MASK_CACHE
        self.masks = SamWindowMasks(
            sam_model.to(self.device).eval(),
            self.settings.parameter_sets,
            self.sam_sets,
            sam_window_px=self.settings.sam_window_px,
            cache=mask_cache,
            cost=self.cost,
            model_identity=self._sam_identity(sam_model),
        )
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(self.settings.pixel_mean, device=self.device).view(shape) * 255
        self._std = torch.tensor(self.settings.pixel_std, device=self.device).view(shape) * 255
        self.queries: list[str] = []
        self.query_features: torch.Tensor | None = None
        self._window_ids: np.ndarray | None = None  # (K, H, W) of the prepared window

    def _sam_identity(self, sam_model: nn.Module) -> str:
        """What distinguishes this SAM's masks in the cache key: its weights' digest, else its name
        (plus the seed: random SAMs of one architecture differ by seed), else the object itself."""
        if self.sam_info.get("sha256"):
            return str(self.sam_info["sha256"])
        if self.sam_info.get("name"):
            seed = self.sam_info.get("seed")
            return str(self.sam_info["name"]) + (f"|seed={seed}" if seed is not None else "")
        return str(id(sam_model))

    @property
    def logit_scale(self) -> float:
        """Scale the pipeline applies before the softmax (the reference: 1, raw cosines)."""
        return self.settings.logit_scale

    @property
    def sam_window_px(self) -> int:
        """Edge of the global SAM-window grid in working pixels. The pipeline widens each read window to
        whole cells of this grid, so every SAM window is segmented whole, once (then cached), and a crop's
        segments do not depend on the tile it runs in."""
        return self.masks.sam_window_px

    # -- SAM side -------------------------------------------------------------------------------------

    @staticmethod
    def _hwc(rgb: torch.Tensor | np.ndarray) -> np.ndarray:
        array = rgb.detach().cpu().numpy() if isinstance(rgb, torch.Tensor) else np.asarray(rgb)
        if array.ndim != 3 or array.shape[0] != 3 or array.dtype != np.uint8:
            raise ValueError(f"expected a (3, H, W) uint8 RGB image, got {array.shape} {array.dtype}")
        return np.ascontiguousarray(array.transpose(1, 2, 0))

    def prepare_window(
        self, window: torch.Tensor | np.ndarray, origin: tuple[int, int] | None = None
    ) -> None:
        """SAM id maps for a read window ((3, H, W) uint8 RGB at working resolution); crops passed to
        ``crop_logits`` afterwards carry their (row, col) inside this window. ``origin``: the window's
        (row, col) in the working raster; given, SAM windows lie on one global grid, so overlapping read
        windows agree wherever they hold a whole grid cell (the cache keys on pixels, not positions)."""
        self._window_ids = self.masks.id_maps(self._hwc(window), origin)

    def release_window(self) -> None:
        """Forget the prepared window's id maps (the pipeline may call this when a window is done)."""
        self._window_ids = None

    def _crop_ids(self, crops: torch.Tensor, origins: Sequence[tuple[int, int]] | None) -> np.ndarray:
        """(B, K, h, w) int32 id maps for the crops."""
        size = tuple(crops.shape[-2:])
        if origins is not None and self._window_ids is not None:
            if len(origins) != crops.shape[0]:
                raise ValueError(f"{len(origins)} origins for {crops.shape[0]} crops")
            return crop_id_maps(self._window_ids, [tuple(map(int, o)) for o in origins], size)
        # Reference structure: every crop is its own SAM window.
        return np.stack([self.masks.id_maps(self._hwc(crop)) for crop in crops])

    # -- CLIP side ------------------------------------------------------------------------------------

    def _block_masks(self, ids: torch.Tensor, n_tokens: int) -> list[torch.Tensor | None]:
        """Additive masks per block from patch ids (B, K, N) (K = SAM sets in use)."""
        heads = num_heads(self.visual)
        batch = ids.shape[0]
        built: dict[str, torch.Tensor] = {}
        masks: list[torch.Tensor | None] = []
        for block in self.schedule:
            label = block.label()
            if block.kind == "full":
                masks.append(None)
                continue
            if label not in built:
                if block.kind == "self":
                    allowed = self_only_allowed(batch, n_tokens, ids.device)
                else:
                    allowed = allowed_from_patch_ids(ids[:, self.sam_sets.index(block.sam_set)])
                built[label] = additive_bias(allowed, heads, self.dtype)
            masks.append(built[label])
        return masks

    @torch.no_grad()
    def crop_logits(
        self, crops: torch.Tensor, origins: Sequence[tuple[int, int]] | None = None
    ) -> torch.Tensor:
        """(B, 3, h, w) uint8 RGB crops → (B, Q, h, w) float32 cosines. ``origins``: each crop's
        (row, col) in the window given to ``prepare_window`` (pixels); None: SAM runs per crop."""
        if self.query_features is None:
            raise RuntimeError("call set_queries() before crop_logits()")
        if crops.dim() != 4 or crops.shape[1] != 3:
            raise ValueError(f"crops must be (B, 3, h, w) RGB, got {tuple(crops.shape)}")
        ids = self._crop_ids(crops, origins)  # SAM time is counted inside
        started = time.perf_counter()
        height, width = crops.shape[-2:]
        padding = patch_padding(height, width, self.patch_size)
        images = (crops.to(self.device, torch.float32) - self._mean) / self._std
        images = F.pad(images, padding) if any(padding) else images
        ids_t = torch.from_numpy(ids).to(self.device)
        if any(padding):
            ids_t = F.pad(ids_t, padding, value=OUTSIDE_ID)
        batch, k = ids_t.shape[:2]
        patch_ids = patch_majority_ids(ids_t.flatten(0, 1), self.patch_size).reshape(batch, k, -1)
        n_tokens = patch_ids.shape[-1] + 1
        tokens = masked_forward(self.visual, images.to(self.dtype), self._block_masks(patch_ids, n_tokens))
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        patches = tokens[:, 1:].float().transpose(1, 2).reshape(batch, -1, *grid)
        text = self.query_features.float()
        # Cosines of the bilinearly resized features, resizing each crop's ≤ h·w + 1 subspace coordinates
        # instead of its D channels (197 against 512 for ViT-B/16), one crop at a time: pixel-resolution
        # tensors of a whole batch are hundreds of MB.
        bilinear = BilinearUpsampler(patches.shape[1]).to(self.device)
        size = tuple(images.shape[-2:])
        logits = torch.cat(
            [
                upsampled_cosine_logits(bilinear, patches[i : i + 1], images[i : i + 1], text, size)
                for i in range(batch)
            ]
        )
        out = remove_padding(logits, padding).contiguous()
        self.cost.clip_seconds += time.perf_counter() - started
        return out

    def describe(self) -> dict:
        settings = asdict(self.settings)
        settings["parameter_sets"] = [p.as_dict() for p in self.settings.parameter_sets]
        settings["pixel_mean"] = list(settings["pixel_mean"])
        settings["pixel_std"] = list(settings["pixel_std"])
        settings["templates"] = list(self.templates)
        return {
            "method": self.name,
            "settings": settings,
            "schedule": describe_schedule(self.schedule),
            "sam_sets_used": [self.settings.parameter_sets[i].name for i in self.sam_sets],
            "queries": list(self.queries),
            "model": {**self.model_info, "patch_size": self.patch_size, "depth": len(self.schedule)},
            "sam": dict(self.sam_info),
            "cost": self.cost.as_dict(),
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }
