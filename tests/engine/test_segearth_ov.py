"""SegEarth-OV's crop logits against the reference's formula written out step by step."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import torch.nn.functional as F

from engine.clip.dense import DenseClip
from engine.clip.templates import REMOTE_SENSING_TEMPLATES
from engine.clip.text import clear_text_cache, encode_queries
from engine.errors import UserError
from engine.methods.base import DenseMethod
from engine.methods.segearth_ov import SegEarthOV, SegEarthOVSettings
from engine.models.architectures import TINY_VIT_16, create_clip, tokenizer_for
from engine.upsamplers.stacks import build_upsampler

QUERIES = ["building", "road", "tree", "water"]
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def clip():
    return create_clip(TINY_VIT_16, seed=7), tokenizer_for(TINY_VIT_16)


def _method(clip, upsampler=None, **settings):
    model, tokenizer = clip
    settings.setdefault("templates", "remote-sensing")
    method = SegEarthOV(model, tokenizer, SegEarthOVSettings(**settings), upsampler=upsampler)
    method.set_queries(QUERIES)
    return method


def _crops(batch, height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), generator=generator, dtype=torch.uint8)


def _reference_logits(clip, crops, upsampler, global_bias):
    """normalise → pad (odd pixel right/bottom) → dense CLIP → [upsample features] → L2 → cosine
    → + λ·cls → [bilinear to padded size] → crop the padding."""
    model, tokenizer = clip
    images = (crops.float() / 255 - MEAN) / STD
    height, width = images.shape[-2:]
    pad_h, pad_w = (-height) % 16, (-width) % 16
    top, left = pad_h // 2, pad_w // 2
    padded = F.pad(images, (left, pad_w - left, top, pad_h - top))
    features = DenseClip(model.visual, "segearth")(padded)
    text = encode_queries(model, tokenizer, QUERIES, list(REMOTE_SENSING_TEMPLATES))
    cls_logits = (features.cls / features.cls.norm(dim=1, keepdim=True)) @ text.T
    dense = upsampler(features.patches, padded) if upsampler is not None else features.patches
    dense = dense / dense.norm(dim=1, keepdim=True)
    logits = torch.einsum("bdhw,qd->bqhw", dense, text) + global_bias * cls_logits[:, :, None, None]
    logits = F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)
    return logits[:, :, top : top + height, left : left + width], cls_logits


@torch.no_grad()
@pytest.mark.parametrize("size", [(224, 224), (100, 130), (17, 5)])
def test_crop_logits_without_upsampler_match_reference(clip, size):
    method = _method(clip)
    crops = _crops(2, *size)
    logits = method.crop_logits(crops)
    assert logits.shape == (2, len(QUERIES), *size) and logits.dtype == torch.float32
    expected, _ = _reference_logits(clip, crops, None, -0.3)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("size", [(64, 48), (40, 29), (8, 5)])
def test_crop_logits_with_upsampler_match_reference(clip, size):
    torch.manual_seed(0)
    upsampler = build_upsampler("jbu_one", 32)
    method = _method(clip, upsampler=upsampler)
    crops = _crops(1, *size, seed=1)
    logits = method.crop_logits(crops)
    assert logits.shape == (1, len(QUERIES), *size)
    expected, _ = _reference_logits(clip, crops, upsampler, -0.3)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_global_bias_adds_lambda_times_class_logits(clip):
    crops = _crops(2, 48, 64, seed=2)
    biased = _method(clip, global_bias=-0.3).crop_logits(crops)
    plain = _method(clip, global_bias=0.0).crop_logits(crops)
    _, cls_logits = _reference_logits(clip, crops, None, 0.0)
    torch.testing.assert_close(
        biased - plain, -0.3 * cls_logits[:, :, None, None].expand_as(plain), atol=1e-5, rtol=0
    )
    assert (biased - plain).abs().max() > 1e-3


@torch.no_grad()
def test_deterministic_and_cached(clip, monkeypatch):
    clear_text_cache()
    method = _method(clip)
    crops = _crops(1, 32, 32, seed=3)
    assert torch.equal(method.crop_logits(crops), method.crop_logits(crops))
    model = clip[0]
    monkeypatch.setattr(model, "encode_text", lambda *args, **kwargs: pytest.fail("text encoder re-run"))
    method.set_queries(QUERIES)


def test_protocol_settings_and_description(clip, caplog):
    with caplog.at_level(logging.WARNING):
        method = _method(clip)
    assert "without a feature upsampler" in caplog.text
    assert isinstance(method, DenseMethod)
    assert (method.name, method.crop_size, method.crop_stride) == ("segearth-ov", 224, 112)
    description = json.loads(json.dumps(method.describe()))
    assert description["upsampler"]["upsampler"] == "bilinear (no weights)"
    assert description["settings"]["global_bias"] == -0.3
    assert description["settings"]["attention"] == "segearth"
    assert description["queries"] == QUERIES
    with_upsampler = _method(clip, upsampler=build_upsampler("jbu_one", 32))
    assert with_upsampler.describe()["upsampler"]["upsampler"] == "JBUOne"
    defaults = SegEarthOVSettings()
    assert (defaults.templates, defaults.logit_scale, defaults.crop_size) == ("imagenet", 50.0, 224)
    with pytest.raises(UserError):
        SegEarthOVSettings(attention="nope")
    with pytest.raises(UserError):
        SegEarthOVSettings(crop_stride=300)
    with pytest.raises(UserError):
        method.set_queries([])


@torch.no_grad()
def test_batched_crops_equal_one_at_a_time(clip):
    torch.manual_seed(1)
    method = _method(clip, upsampler=build_upsampler("jbu_one", 32))
    crops = _crops(3, 48, 32, seed=5)
    together = method.crop_logits(crops)
    for index in range(3):
        alone = method.crop_logits(crops[index : index + 1])
        torch.testing.assert_close(together[index : index + 1], alone, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_dtype_names_and_auto(clip, monkeypatch):
    from engine.runtime import precision

    model, tokenizer = clip
    monkeypatch.setattr(precision, "cpu_has_bf16_matrix_units", lambda: True)
    try:
        method = SegEarthOV(model, tokenizer, SegEarthOVSettings(templates="remote-sensing"), dtype="auto")
        assert method.dtype is torch.bfloat16 and method.describe()["dtype"] == "bfloat16"
        method.set_queries(QUERIES)
        assert method.query_features.dtype == torch.float32  # text embeddings keep full precision
        logits = method.crop_logits(_crops(1, 32, 32, seed=6))
        assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
        with pytest.raises(UserError):
            SegEarthOV(model, tokenizer, dtype="half-ish")
    finally:
        model.float()  # the module-scoped model is shared with the other tests


@torch.no_grad()
def test_bf16_backbone_runs_the_upsampler_products_in_bf16(clip):
    """Under a bf16 backbone the upsampler's steps receive bf16 sources (its weights stay float32) and the
    logits stay float32 and close to the float32 method's: bf16's unit roundoff 2⁻⁹ through a 3-block
    backbone and four upsampling steps, on cosines ≤ 1 (λ·cls adds ≤ 0.3 more). Measured ≈ 2e-3; the
    tolerance 0.01 ≈ 5 roundoffs at 1.0 leaves 5× slack for other bf16 kernels (AMX vs emulated)."""
    model, tokenizer = clip
    torch.manual_seed(2)
    upsampler = build_upsampler("jbu_one", 32)
    crops = _crops(2, 48, 40, seed=7)
    full = _method(clip, upsampler=upsampler).crop_logits(crops)
    seen = []
    try:
        method = SegEarthOV(
            model,
            tokenizer,
            SegEarthOVSettings(templates="remote-sensing"),
            upsampler=upsampler,
            dtype="bfloat16",
        )
        method.set_queries(QUERIES)
        hook = method.upsampler.up.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
        reduced = method.crop_logits(crops)
        hook.remove()
    finally:
        model.float()  # the module-scoped model is shared with the other tests
    assert seen == [torch.bfloat16] * 4 * len(crops)  # four steps, one crop per call on the CPU
    assert next(method.upsampler.parameters()).dtype == torch.float32
    assert reduced.dtype == torch.float32 and reduced.shape == full.shape
    torch.testing.assert_close(reduced, full, atol=0.01, rtol=0)


def test_cpu_upsamples_one_crop_per_call(clip, monkeypatch):
    """Batch-sized upsampler temporaries fragment the heap on the CPU (see UPSAMPLER_CROPS_PER_CALL_CPU)."""
    from engine.methods import segearth_ov

    batches = []
    original = segearth_ov.upsampled_cosine_logits

    def recording(upsampler, patches, *args, **kwargs):
        batches.append(len(patches))
        return original(upsampler, patches, *args, **kwargs)

    monkeypatch.setattr(segearth_ov, "upsampled_cosine_logits", recording)
    method = _method(clip, upsampler=build_upsampler("jbu_one", 32))
    assert method.crop_logits(_crops(3, 32, 32, seed=2)).shape[0] == 3
    assert batches == [segearth_ov.UPSAMPLER_CROPS_PER_CALL_CPU] * 3 == [1, 1, 1]
