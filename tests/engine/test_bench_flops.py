"""The analytic FLOP counts of engine.bench.flops against torch's own FlopCounterMode.

FlopCounterMode counts the matmuls, convolutions and batched products a forward pass really issues;
the analytic formulas must match it exactly on tiny models of the real architectures (CLIP ViT with
the dense last block, SAM's image encoder) and on a plainly written joint bilateral upsampler.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from engine.bench import flops as fl
from engine.bench.micro import reference_forward
from engine.bench.runner import jbu_spec_of, sam_spec_of


def counted(fn) -> int:
    """FLOPs FlopCounterMode sees. nn.MultiheadAttention's fused fast path and the CPU flash kernel
    are invisible to it, so both are switched to their plain matmul forms while counting."""
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)
    return counter.get_total_flops()


@pytest.fixture(scope="module")
def tiny_clip():
    from engine.models.architectures import TINY_VIT_16, create_clip

    return create_clip(TINY_VIT_16, seed=0)


@pytest.mark.parametrize(("mode", "terms"), [("segearth", 3), ("clearclip", 1), ("maskclip", 0)])
@pytest.mark.parametrize("size", [(64, 80), (70, 50)])
def test_dense_clip_count_matches_flop_counter(tiny_clip, mode, terms, size):
    from engine.clip.dense import DenseClip

    dense = DenseClip(tiny_clip.visual, mode)
    images = torch.randn(2, 3, *size)
    spec = fl.VitSpec.from_open_clip(tiny_clip.visual)
    assert spec.layers == 3 and spec.width == 64 and spec.patch == 16
    assert counted(lambda: dense(images)) == 2 * fl.clip_image_flops(*size, spec, terms)


def test_vit_b16_count_is_the_known_size():
    # ViT-B/16 at 224² is ~17.5 GMACs; SegEarth's last block drops the MLP (≈ 1 of 35 GFLOP).
    full = fl.clip_image_flops(224, 224, fl.VIT_B_16, None)
    assert 34.5e9 < full < 36.5e9
    assert fl.clip_image_flops(224, 224, fl.VIT_B_16, 3) < full


def test_sam_encoder_count_matches_flop_counter():
    from engine.models.sam_architectures import create_sam

    sam = create_sam("tiny", seed=0)
    spec = sam_spec_of(sam)  # found by attribute search, as for a ReSeg-CLIP method
    assert (spec.width, spec.depth, spec.global_blocks, spec.window) == (32, 2, 1, 14)
    image = torch.randn(1, 3, spec.image_size, spec.image_size)
    assert counted(lambda: sam.image_encoder(image)) == fl.sam_encoder_flops(spec)


def test_sam_vit_b_is_about_one_teraflop():
    assert 0.9e12 < fl.sam_encoder_flops(fl.SAM_VIT_B) < 1.05e12


class PlainJbu(nn.Module):
    """FeatUp's four-step joint bilateral upsampler written the obvious way (unfold everything)."""

    def __init__(self, spec: fl.JbuSpec):
        super().__init__()
        self.spec = spec
        d2 = (2 * spec.radius + 1) ** 2
        self.keys = nn.Sequential(
            nn.Conv2d(spec.guidance_dim, spec.key_dim, 1), nn.GELU(), nn.Conv2d(spec.key_dim, spec.key_dim, 1)
        )
        self.fix = nn.Sequential(nn.Conv2d(spec.guidance_dim + d2, d2, 1), nn.GELU(), nn.Conv2d(d2, d2, 1))
        self.out = nn.Conv2d(spec.channels, spec.channels, 1)

    def step(self, source, guidance):
        r = self.spec.radius
        d = 2 * r + 1
        b, c = source.shape[:2]
        h, w = guidance.shape[-2:]
        keys = self.keys(guidance)
        around = F.unfold(F.pad(keys, (r, r, r, r), mode="reflect"), d).view(b, -1, d * d, h, w)
        kernel = torch.einsum("bkthw,bkhw->bthw", around, keys).softmax(1)
        kernel = kernel + self.fix(torch.cat([kernel, guidance], 1))
        up = F.interpolate(source, (h, w), mode="bicubic", align_corners=False)
        patches = F.unfold(F.pad(up, (r, r, r, r), mode="reflect"), d).view(b, c, d * d, h, w)
        return torch.einsum("bcthw,bthw->bchw", patches, kernel)

    def forward(self, source, image):
        for _ in range(self.spec.steps):
            h, w = source.shape[-2:]
            source = self.step(source, F.adaptive_avg_pool2d(image, (2 * h, 2 * w)))
        return source + self.out(source)


def test_jbu_count_matches_flop_counter_of_plain_upsampler():
    spec = fl.JbuSpec(channels=8, radius=2, key_dim=4, guidance_dim=3, steps=4)
    module = PlainJbu(spec).eval()
    features = torch.randn(1, 8, 2, 3)
    image = torch.randn(1, 3, 32, 48)
    assert counted(lambda: module(features, image)) == fl.jbu_flops(32, 48, spec, patch=16)


def test_jbu_one_at_224_is_the_issue_figure():
    # SimFeatUp on ViT-B/16 features: ≈ 39 GFLOP per 224² crop (≈ 350 GFLOP for the 9 crops of a tile).
    assert 38e9 < fl.jbu_flops(224, 224) < 40.5e9


def test_spec_of_engine_upsampler_and_reference_formulation_agree():
    from engine.upsamplers.stacks import JBUOne

    torch.manual_seed(0)
    upsampler = JBUOne(8).eval()
    spec = jbu_spec_of(upsampler)
    assert spec == fl.JbuSpec(channels=8, radius=5, key_dim=32, guidance_dim=3, steps=4)
    # 4² features: the first ×2 step's 8² output is the smallest F.pad's reflection accepts for radius 5.
    features = torch.randn(2, 8, 4, 4)
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = upsampler(features, image)
        reference = reference_forward(upsampler, features, image)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_segearth_crop_parts_add_up():
    crop = fl.segearth_crop_flops(224, 224, 14)
    assert crop.total == crop.clip + crop.upsampler + crop.logits
    assert crop.logits == 2 * 224 * 224 * 512 * 14
    assert fl.segearth_crop_flops(224, 224, 14, upsampler=None).upsampler == 0
