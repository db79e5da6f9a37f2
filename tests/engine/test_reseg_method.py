"""The whole ReSeg-CLIP method with tiny random CLIP and SAM: shapes, the window hook, the mask cache
across vocabularies, per-crop fallback, schedule errors, and a JSON-able description."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.errors import UserError
from engine.methods.base import DenseMethod
from engine.methods.reseg.schedule import describe_schedule
from engine.methods.reseg_clip import ResegClip, ResegClipSettings
from engine.models.architectures import TINY_VIT_14, TINY_VIT_16, create_clip, tokenizer_for
from engine.models.sam_architectures import create_sam
from engine.sam.mask_cache import WindowMaskCache
from engine.sam.parameter_sets import SamParameterSet

SETS = (SamParameterSet("fine", 2, 0.0, 0.0, 0), SamParameterSet("coarse", 2, 0.0, 0.0, 30))


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Every test here runs tiny models (see conftest)."""


@pytest.fixture(scope="module")
def sam():
    return create_sam("tiny", seed=0)


@pytest.fixture(scope="module")
def window():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, (3, 200, 260), dtype=np.uint8)
    image[:, 40:150, 60:200] = np.array([30, 160, 40], np.uint8)[:, None, None]
    return torch.from_numpy(image)


def make(sam, arch=TINY_VIT_14, **settings):
    settings.setdefault("parameter_sets", SETS)
    return ResegClip(
        create_clip(arch, seed=0),
        tokenizer_for(arch),
        sam,
        ResegClipSettings(**settings),
        mask_cache=WindowMaskCache(),
    )


def test_runs_end_to_end_and_a_new_vocabulary_costs_no_sam(sam, window):
    method = make(sam, schedule="sam1,sam2,self")
    assert isinstance(method, DenseMethod)
    method.set_queries(["road", "tree", "water"])
    method.prepare_window(window)
    assert method.cost.sam_encoder_passes == 1 + 4  # one window, 4 crop-layer crops, both SAM sets
    origins = [(0, 0), (0, 36), (32, 0)]
    crops = torch.stack([window[:, r : r + 168, c : c + 224] for r, c in origins])
    logits = method.crop_logits(crops, origins=origins)
    assert logits.shape == (3, 3, 168, 224) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all() and logits.abs().max() <= 1 + 1e-5  # cosines

    method.set_queries(["building", "car"])
    method.prepare_window(window)  # same pixels: masks from the cache
    assert method.cost.sam_encoder_passes == 5 and method.cost.sam_windows_cached == 1
    assert method.crop_logits(crops, origins=origins).shape == (3, 2, 168, 224)
    description = method.describe()
    json.dumps(description)
    assert description["schedule"] == "3*full,sam1,sam2,self"
    assert description["cost"]["sam_encoder_passes"] == 5 and description["cost"]["clip_seconds"] > 0


def test_window_masks_equal_per_crop_masks_when_the_crop_is_the_window(sam, window):
    # A crop read from a prepared window of the same pixels must see exactly the masks SAM gives the crop.
    crop = window[:, :112, :112].contiguous()
    method = make(sam, arch=TINY_VIT_16)
    method.set_queries(["a", "b"])
    method.prepare_window(crop)
    from_window = method.crop_logits(crop[None], origins=[(0, 0)])
    method.release_window()
    per_crop = method.crop_logits(crop[None])
    torch.testing.assert_close(from_window, per_crop)


def test_crops_need_padding_to_the_patch_size(sam, window):
    method = make(sam, arch=TINY_VIT_16)
    method.set_queries(["x"])
    method.prepare_window(window)
    logits = method.crop_logits(window[None, :, :100, :90], origins=[(0, 0)])
    assert logits.shape == (1, 1, 100, 90) and torch.isfinite(logits).all()


def test_default_schedules_follow_depth(sam):
    assert describe_schedule(make(sam, arch=TINY_VIT_14).schedule) == "4*full,sam1,self"
    assert describe_schedule(make(sam, arch=TINY_VIT_16).schedule) == "full,sam1,self"


def test_schedule_longer_than_the_model_is_a_user_error(sam):
    with pytest.raises(UserError, match="only 3"):
        make(sam, arch=TINY_VIT_16, schedule="2*full,sam1,sam2")


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="crop stride"):
        ResegClipSettings(crop_stride=0)
    with pytest.raises(UserError, match="at least one crop"):
        ResegClipSettings(sam_window_px=100)


def test_registry_factory_builds_a_random_weights_method():
    from engine.methods.registry import MethodOptions, ModelCache
    from engine.methods.reseg.factory import create_reseg_clip

    options = MethodOptions(
        clip=TINY_VIT_16, random_weights=True, extra={"schedule": "sam2,self", "sam_window": 448}
    )
    method = create_reseg_clip(options, ModelCache())
    assert method.describe()["schedule"] == "full,sam2,self"
    assert method.settings.sam_window_px == 448 and method.sam_sets == [1]
    with pytest.raises(UserError, match="unknown ReSeg-CLIP options"):
        create_reseg_clip(
            MethodOptions(clip=TINY_VIT_16, random_weights=True, extra={"colour": 1}), ModelCache()
        )


def test_crop_cosines_are_those_of_resizing_every_feature_channel(sam, window, monkeypatch):
    """The patch features resized bilinearly to pixels, L2-normalised and dotted with the queries, done
    the obvious way from the tokens the masked CLIP produced."""
    from engine.methods import reseg_clip

    seen = []
    original = reseg_clip.masked_forward
    monkeypatch.setattr(reseg_clip, "masked_forward", lambda *a: seen.append(original(*a)) or seen[-1])
    method = make(sam, arch=TINY_VIT_16, schedule="sam1,self")
    method.set_queries(["road", "tree", "water", "roof"])
    method.prepare_window(window)
    origins = [(0, 0), (16, 32)]
    crops = torch.stack([window[:, r : r + 160, c : c + 224] for r, c in origins])
    logits = method.crop_logits(crops, origins=origins)
    patches = seen[0][:, 1:].float().transpose(1, 2).reshape(2, -1, 10, 14)
    dense = torch.nn.functional.interpolate(patches, size=(160, 224), mode="bilinear", align_corners=False)
    dense = torch.nn.functional.normalize(dense, dim=1)
    expected = torch.einsum("bdhw,qd->bqhw", dense, method.query_features.float())
    torch.testing.assert_close(logits, expected, rtol=0, atol=2e-5)
