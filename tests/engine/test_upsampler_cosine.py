"""Cosine logits in the per-crop feature subspace against upsampling every channel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.upsamplers.cosine import BilinearUpsampler, is_linear_upsampler, upsampled_cosine_logits
from engine.upsamplers.stacks import build_upsampler


def _full_logits(upsampler, patches, guidance, text, size):
    """The obvious way: upsample all D channels, resize, L2-normalise each pixel, dot with each query."""
    dense = upsampler(patches, guidance)
    if dense.shape[-2:] != size:
        dense = F.interpolate(dense, size=size, mode="bilinear", align_corners=False)
    dense = dense / dense.norm(dim=1, keepdim=True)
    return torch.einsum("bdhw,qd->bqhw", dense, text)


def _inputs(dim, grid, seed, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    patches = torch.randn(3, dim, *grid, generator=generator, dtype=dtype)
    guidance = torch.randn(3, 3, 16 * grid[0], 16 * grid[1], generator=generator, dtype=dtype)
    text = F.normalize(torch.randn(5, dim, generator=generator, dtype=dtype), dim=-1)
    return patches, guidance, text


def _upsampler(kind, dim, seed):
    torch.manual_seed(seed)
    upsampler = build_upsampler(kind, dim).double()
    with torch.no_grad():
        upsampler.fixup_proj[1].bias.normal_()  # a non-zero constant c widens the span by one
    return upsampler


@torch.no_grad()
@pytest.mark.parametrize(("kind", "grid"), [("jbu_one", (2, 3)), ("jbu_stack", (3, 3)), ("jbu_one", (1, 1))])
def test_subspace_logits_equal_full_upsampling(kind, grid):
    dim = 40  # > 1.25 · (h·w + 1): the subspace path is taken
    upsampler = _upsampler(kind, dim, seed=1)
    patches, guidance, text = _inputs(dim, grid, seed=2)
    size = guidance.shape[-2:]
    expected = _full_logits(upsampler, patches, guidance, text, size)
    actual = upsampled_cosine_logits(upsampler, patches, guidance, text, size)
    assert actual.shape == (3, 5, *size)
    torch.testing.assert_close(actual, expected, atol=1e-10, rtol=1e-10)
    # float32 stays within float32 rounding of the float64 reference
    single = upsampled_cosine_logits(upsampler.float(), patches.float(), guidance.float(), text.float(), size)
    torch.testing.assert_close(single, expected.float(), atol=2e-5, rtol=1e-4)


@torch.no_grad()
def test_subspace_with_resize_to_a_different_size():
    """A /14 backbone under a ×16 upsampler: the bilinear resize is linear too and commutes with V."""
    upsampler = _upsampler("jbu_one", 24, seed=3)
    patches, guidance, text = _inputs(24, (2, 2), seed=4)
    size = (28, 27)
    expected = _full_logits(upsampler, patches, guidance, text, size)
    torch.testing.assert_close(
        upsampled_cosine_logits(upsampler, patches, guidance, text, size), expected, atol=1e-10, rtol=1e-10
    )


@torch.no_grad()
def test_batch_members_are_independent():
    """Each crop has its own basis: a crop's logits do not depend on its batch neighbours."""
    upsampler = _upsampler("jbu_one", 32, seed=5)
    patches, guidance, text = _inputs(32, (2, 2), seed=6)
    together = upsampled_cosine_logits(upsampler, patches, guidance, text, (32, 32))
    for index in range(3):
        alone = upsampled_cosine_logits(
            upsampler, patches[index : index + 1], guidance[index : index + 1], text, (32, 32)
        )
        torch.testing.assert_close(together[index : index + 1], alone, atol=1e-10, rtol=1e-10)


class _Bilinear16(nn.Module):
    """A non-decomposed upsampler: only forward exists, so the full path must be used."""

    def forward(self, source, guidance):
        return F.interpolate(source, scale_factor=16, mode="bilinear", align_corners=False) ** 2


@torch.no_grad()
def test_fallbacks_use_the_upsampler_as_a_black_box():
    patches, guidance, text = _inputs(8, (2, 2), seed=7)
    plain = _Bilinear16()
    assert not is_linear_upsampler(plain)
    torch.testing.assert_close(
        upsampled_cosine_logits(plain, patches, guidance, text, (32, 32)),
        _full_logits(plain, patches, guidance, text, (32, 32)),
    )
    # Too few channels to save anything (D = 8 < h·w + 1 = 5 / 0.8): the full path, same numbers.
    small = _upsampler("jbu_one", 8, seed=8)
    assert is_linear_upsampler(small)
    torch.testing.assert_close(
        upsampled_cosine_logits(small, patches, guidance, text, (32, 32)),
        _full_logits(small, patches, guidance, text, (32, 32)),
    )


@torch.no_grad()
@pytest.mark.parametrize(("kind", "grid"), [("jbu_one", (2, 3)), ("jbu_stack", (3, 3))])
def test_bf16_upsampling_tracks_float64_logits(kind, grid):
    """compute_dtype=bfloat16 upsamples the subspace coordinates in bf16 but keeps basis, norms and
    cosines in float32. Cosines are ≤ 1 in magnitude; bf16's unit roundoff is 2⁻⁹ ≈ 0.002 and the four
    steps' roundings partly cancel after normalisation, so 5e-3 absolute is ~2.5 roundoffs of slack over
    a pure rounding of the result (measured: ≈ 1.7e-3)."""
    upsampler = _upsampler(kind, 40, seed=1)
    patches, guidance, text = _inputs(40, grid, seed=2)
    size = guidance.shape[-2:]
    expected = _full_logits(upsampler, patches, guidance, text, size)
    upsampler = upsampler.float()
    args = (upsampler, patches.float(), guidance.float(), text.float(), size)
    reduced = upsampled_cosine_logits(*args, compute_dtype=torch.bfloat16)
    assert reduced.dtype == torch.float32 and reduced.shape == expected.shape
    torch.testing.assert_close(reduced, expected.float(), atol=5e-3, rtol=0)
    # float32 compute_dtype is the default path, bit for bit
    assert torch.equal(
        upsampled_cosine_logits(*args, compute_dtype=torch.float32), upsampled_cosine_logits(*args)
    )


@torch.no_grad()
def test_float32_basis_is_orthonormal_and_spans_the_features():
    """The float32 QR's basis: VᵀV = I and V Vᵀ z = z for every spanning vector, to float32 rounding."""
    upsampler = _upsampler("jbu_one", 512, seed=9).float()
    generator = torch.Generator().manual_seed(10)
    patches = torch.randn(2, 512, 14, 14, generator=generator)
    mapped = upsampler.channel_map(patches).flatten(2)
    spanning = torch.cat([mapped, upsampler.output_bias().view(1, 512, 1).expand(2, 512, 1)], dim=2)
    basis, _ = torch.linalg.qr(spanning)
    assert basis.shape == (2, 512, 197)
    identity = torch.eye(197).expand(2, 197, 197)
    torch.testing.assert_close(basis.transpose(1, 2) @ basis, identity, atol=2e-6, rtol=0)
    projected = basis @ (basis.transpose(1, 2) @ spanning)
    torch.testing.assert_close(projected, spanning, atol=1e-4 * spanning.abs().max().item(), rtol=0)


@torch.no_grad()
@pytest.mark.parametrize(("dim", "grid", "size"), [(512, (14, 14), (224, 224)), (96, (3, 5), (40, 75))])
def test_bilinear_features_give_the_cosines_of_resizing_every_channel(dim, grid, size):
    """ReSeg-CLIP's bilinear feature resize through the subspace (512 channels, 197 coordinates) and the
    all-channel fallback (96 channels, rank 16 saves too little), against resizing all D channels."""
    generator = torch.Generator().manual_seed(dim)
    patches = torch.randn(2, dim, *grid, generator=generator, dtype=torch.float64)
    image = torch.zeros(2, 3, *size, dtype=torch.float64)
    text = F.normalize(torch.randn(6, dim, generator=generator, dtype=torch.float64), dim=-1)
    bilinear = BilinearUpsampler(dim)
    assert is_linear_upsampler(bilinear)
    dense = F.interpolate(patches, size=size, mode="bilinear", align_corners=False)
    expected = torch.einsum("bdhw,qd->bqhw", F.normalize(dense, dim=1), text)
    got = upsampled_cosine_logits(bilinear, patches, image, text, size)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
