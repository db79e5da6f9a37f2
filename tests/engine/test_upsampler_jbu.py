"""Joint bilateral upsamplers against slow, obvious implementations, and the real FeatUp checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from engine.errors import UserError
from engine.upsamplers.adaptive_conv import adaptive_conv_upsampled, reflect_indices, reflect_pad
from engine.upsamplers.jbu import JointBilateralUpsampler
from engine.upsamplers.neighbour_similarity import neighbour_dot_products
from engine.upsamplers.stacks import build_upsampler, upsampler_from_state_dict, upsampler_kind

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CHECKPOINT = DATA / "featup_jbu_stack_clip_vitb16_cocostuff.ckpt"


def _slow_adaptive_conv(source, kernel, radius):
    """The reference's path: bicubic upsample, reflect pad, unfold every d×d neighbourhood, weight, sum."""
    batch, channels = source.shape[:2]
    _, height, width, diameter, _ = kernel.shape
    high = F.interpolate(source, (height, width), mode="bicubic", align_corners=False)
    padded = F.pad(high, [radius] * 4, mode="reflect")
    patches = F.unfold(padded, diameter).view(batch, channels, diameter * diameter, height, width)
    return torch.einsum("bhwt,bcthw->bchw", kernel.reshape(batch, height, width, -1), patches)


def test_reflect_matches_torch_where_torch_allows():
    for size, radius in [(5, 4), (9, 3), (12, 5), (2, 1)]:
        signal = torch.arange(float(size)).view(1, 1, 1, size)
        expected = F.pad(signal, (radius, radius, 0, 0), mode="reflect").flatten()
        assert torch.equal(signal.flatten()[reflect_indices(size, radius)], expected)
    assert reflect_indices(1, 3).tolist() == [0] * 7
    assert reflect_indices(2, 3).tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    image = torch.randn(2, 3, 4, 6)
    torch.testing.assert_close(reflect_pad(image, 3), F.pad(image, [3] * 4, mode="reflect"))


@pytest.mark.parametrize(
    ("low", "high", "radius", "tile", "chunk_bytes"),
    [
        ((7, 5), (14, 10), 5, 8, 64 * 2**20),
        ((14, 14), (28, 28), 3, 8, 1),  # one tile row per chunk
        ((6, 9), (12, 18), 5, 4, 2000),
        ((3, 4), (6, 8), 1, 16, 64 * 2**20),
        ((8, 8), (16, 16), 2, 5, 64 * 2**20),  # tiles that do not divide the image
    ],
)
def test_fast_adaptive_conv_equals_unfold_reference(low, high, radius, tile, chunk_bytes):
    generator = torch.Generator().manual_seed(sum(low) + radius)
    diameter = 2 * radius + 1
    source = torch.randn(2, 6, *low, generator=generator, dtype=torch.float64)
    kernel = torch.randn(2, *high, diameter, diameter, generator=generator, dtype=torch.float64)
    fast = adaptive_conv_upsampled(source, kernel, radius, tile=tile, chunk_bytes=chunk_bytes)
    torch.testing.assert_close(fast, _slow_adaptive_conv(source, kernel, radius), atol=1e-12, rtol=1e-12)
    single = adaptive_conv_upsampled(source.float(), kernel.float(), radius)
    torch.testing.assert_close(
        single, _slow_adaptive_conv(source, kernel, radius).float(), atol=1e-4, rtol=1e-4
    )


def _randomised_step(radius, seed):
    torch.manual_seed(seed)
    step = JointBilateralUpsampler(3, 4, radius).eval()
    with torch.no_grad():
        step.range_temp.fill_(0.7)
        step.sigma_spatial.fill_(0.8)
        for parameter in step.fixup_proj.parameters():
            parameter.mul_(3)  # make the learned correction matter
    return step


def _slow_bilateral_kernel(step, guidance):
    """Per pixel and per tap, straight from the definition."""
    radius, diameter = step.radius, step.diameter
    conv_a, conv_b = step.range_proj[0], step.range_proj[3]
    keys = conv_b(F.gelu(conv_a(guidance)))[0]  # (K, H, W)
    padded = F.pad(keys[None], [radius] * 4, mode="reflect")[0]
    _, height, width = keys.shape
    temperature = math.exp(step.range_temp.item())
    sigma = step.sigma_spatial.item()
    offsets = [-1 + 2 * t / (diameter - 1) for t in range(diameter)]
    fix_a, fix_b = step.fixup_proj[0], step.fixup_proj[3]
    kernel = torch.zeros(height, width, diameter, diameter)
    for y in range(height):
        for x in range(width):
            logits = torch.tensor(
                [
                    temperature * torch.dot(padded[:, y + i, x + j], keys[:, y, x]).item()
                    for i in range(diameter)
                    for j in range(diameter)
                ]
            )
            range_term = torch.exp(logits - logits.max())
            range_term = range_term / range_term.sum()
            spatial = torch.tensor(
                [
                    math.exp(-(offsets[i] ** 2 + offsets[j] ** 2) / (2 * sigma**2))
                    for i in range(diameter)
                    for j in range(diameter)
                ]
            )
            combined = range_term * spatial
            combined = combined / combined.sum()
            features = torch.cat([combined, guidance[0, :, y, x]])
            hidden = F.gelu(fix_a.weight[:, :, 0, 0] @ features + fix_a.bias)
            correction = fix_b.weight[:, :, 0, 0] @ hidden + fix_b.bias
            kernel[y, x] = (combined + 0.1 * correction).view(diameter, diameter)
    return kernel


@torch.no_grad()
def test_bilateral_kernel_equals_per_pixel_loop():
    step = _randomised_step(radius=2, seed=0)
    guidance = torch.randn(1, 3, 6, 5, generator=torch.Generator().manual_seed(1))
    fast = step.bilateral_kernel(guidance)[0]
    torch.testing.assert_close(fast, _slow_bilateral_kernel(step, guidance), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_step_forward_is_kernel_applied_to_bicubic_source():
    step = _randomised_step(radius=5, seed=2)
    generator = torch.Generator().manual_seed(3)
    source = torch.randn(2, 7, 6, 5, generator=generator)
    guidance = torch.randn(2, 3, 12, 10, generator=generator)
    expected = _slow_adaptive_conv(source, step.bilateral_kernel(guidance), step.radius)
    torch.testing.assert_close(step(source, guidance), expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_jbu_one_reuses_one_step_four_times():
    upsampler = build_upsampler("jbu_one", 5)
    generator = torch.Generator().manual_seed(4)
    source = torch.randn(1, 5, 3, 2, generator=generator)
    image = torch.randn(1, 3, 48, 32, generator=generator)
    features = source
    for _ in range(4):
        guidance = F.adaptive_avg_pool2d(image, (2 * features.shape[-2], 2 * features.shape[-1]))
        features = upsampler.up(features, guidance)
    expected = features + 0.1 * upsampler.fixup_proj[1](features)
    actual = upsampler(source, image)
    assert actual.shape == (1, 5, 48, 32)
    torch.testing.assert_close(actual, expected)
    assert upsampler.up.diameter == 11


def test_state_dict_keys_match_reference_layouts():
    one = set(build_upsampler("jbu_one", 8).state_dict())
    step_keys = {
        "range_temp",
        "sigma_spatial",
        "range_proj.0.weight",
        "range_proj.0.bias",
        "range_proj.3.weight",
        "range_proj.3.bias",
        "fixup_proj.0.weight",
        "fixup_proj.0.bias",
        "fixup_proj.3.weight",
        "fixup_proj.3.bias",
    }
    assert one == {f"up.{key}" for key in step_keys} | {"fixup_proj.1.weight", "fixup_proj.1.bias"}
    stack = set(build_upsampler("jbu_stack", 8).state_dict())
    assert stack == {f"up{n}.{key}" for n in range(1, 5) for key in step_keys} | {
        "fixup_proj.1.weight",
        "fixup_proj.1.bias",
    }
    assert build_upsampler("jbu_one", 8).state_dict()["up.fixup_proj.0.weight"].shape == (121, 124, 1, 1)


@torch.no_grad()
def test_round_trip_from_lightning_style_state_dict():
    original = build_upsampler("jbu_one", 6)
    state = {f"upsampler.{key}": value for key, value in original.state_dict().items()}
    state["downsampler.something"] = torch.zeros(1)
    loaded, kind = upsampler_from_state_dict(state)
    assert kind == "jbu_one"
    source, image = torch.randn(1, 6, 2, 2), torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(source, image), original(source, image))
    with pytest.raises(UserError):
        upsampler_kind({"conv.weight": torch.zeros(1)})
    with pytest.raises(UserError):
        build_upsampler("carafe", 4)
    broken = dict(state)
    broken.pop("upsampler.up.range_temp")
    with pytest.raises(UserError, match="do not fit"):
        upsampler_from_state_dict(broken)


@pytest.mark.skipif(not CHECKPOINT.exists(), reason="real FeatUp checkpoint not available")
@torch.no_grad()
def test_real_featup_jbu_stack_checkpoint():
    checkpoint = torch.load(CHECKPOINT, weights_only=True, map_location="cpu")
    upsampler, kind = upsampler_from_state_dict(checkpoint["state_dict"])
    assert kind == "jbu_stack"
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(1, 512, 3, 2, generator=generator)
    image = torch.randn(1, 3, 48, 32, generator=generator)
    output = upsampler(source, image)
    assert output.shape == (1, 512, 48, 32)
    assert torch.isfinite(output).all()
    bilinear = F.interpolate(source, (48, 32), mode="bilinear", align_corners=False)
    assert (output - bilinear).abs().mean() > 1e-2


def _slow_neighbour_dot_products(keys, radius):
    """One tap at a time over the reflect-padded keys: logits[..., i·d + j] = <k[y, x], k̃[y + i, x + j]>."""
    channels_first = keys.permute(0, 3, 1, 2)
    padded = reflect_pad(channels_first, radius)
    height, width = keys.shape[1:3]
    diameter = 2 * radius + 1
    taps = [
        (padded[:, :, i : i + height, j : j + width] * channels_first).sum(1)
        for i in range(diameter)
        for j in range(diameter)
    ]
    return torch.stack(taps, dim=-1)


@pytest.mark.parametrize(
    ("size", "radius", "tile", "chunk_bytes"),
    [
        ((16, 16), 5, 8, 64 * 2**20),
        ((13, 22), 3, 8, 1),  # partial tiles, one tile row per chunk
        ((5, 7), 5, 4, 64 * 2**20),  # radius larger than the image: periodic reflection
        ((9, 4), 2, 3, 5000),
        ((1, 1), 1, 8, 64 * 2**20),
    ],
)
def test_tiled_neighbour_dot_products_equal_tap_loop(size, radius, tile, chunk_bytes):
    generator = torch.Generator().manual_seed(size[0] * 31 + radius)
    keys = torch.randn(2, *size, 5, generator=generator, dtype=torch.float64)
    fast = neighbour_dot_products(keys, radius, tile=tile, chunk_bytes=chunk_bytes)
    assert fast.shape == (2, *size, (2 * radius + 1) ** 2)
    torch.testing.assert_close(fast, _slow_neighbour_dot_products(keys, radius), atol=1e-12, rtol=1e-12)


@torch.no_grad()
@pytest.mark.parametrize("kind", ["jbu_one", "jbu_stack"])
def test_low_res_channel_map_equals_residual_conv_at_full_resolution(kind):
    """forward applies A = I + 0.1·W before the (linear) steps; the reference applies it after them."""
    torch.manual_seed(5)
    upsampler = build_upsampler(kind, 6).double()
    with torch.no_grad():
        upsampler.fixup_proj[1].bias.normal_()
    generator = torch.Generator().manual_seed(6)
    source = torch.randn(2, 6, 3, 4, generator=generator, dtype=torch.float64)
    image = torch.randn(2, 3, 48, 64, generator=generator, dtype=torch.float64)
    high = upsampler.spatial(source, image)
    expected = high + 0.1 * upsampler.fixup_proj[1](high)
    torch.testing.assert_close(upsampler(source, image), expected, atol=1e-12, rtol=1e-12)
    training = upsampler.train()
    torch.manual_seed(0)
    assert training(source, image).shape == expected.shape  # dropout path keeps the reference order


@torch.no_grad()
def test_bilateral_kernel_with_a_vanishing_spatial_term_uses_the_floor():
    """σ so small that corner taps underflow: the normaliser's floor path, still the per-pixel definition."""
    step = _randomised_step(radius=2, seed=4)
    step.sigma_spatial.fill_(0.05)
    assert step.spatial_kernel().min() < 1e-7
    guidance = torch.randn(1, 3, 5, 4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        step.bilateral_kernel(guidance)[0], _slow_bilateral_kernel(step, guidance), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(step.range_kernel(guidance).sum(1), torch.ones(1, 5, 4))


@torch.no_grad()
def test_bf16_kernel_runs_products_in_bf16_and_softmax_in_float32(monkeypatch):
    """Under a bf16 compute dtype the key projection and neighbour products are bf16, the softmax float32."""
    from engine.upsamplers import jbu

    seen = {"products": [], "softmax": []}
    products, softmax = jbu.neighbour_dot_products, F.softmax

    def spy_products(keys, radius, **options):
        seen["products"].append(keys.dtype)
        result = products(keys, radius, **options)
        seen["products"].append(result.dtype)
        return result

    def spy_softmax(logits, dim):
        seen["softmax"].append(logits.dtype)
        return softmax(logits, dim=dim)

    monkeypatch.setattr(jbu, "neighbour_dot_products", spy_products)
    monkeypatch.setattr(jbu.F, "softmax", spy_softmax)
    step = _randomised_step(radius=2, seed=5)
    guidance = torch.randn(2, 3, 7, 6, generator=torch.Generator().manual_seed(8))
    reduced = step.bilateral_kernel(guidance, torch.bfloat16)
    assert reduced.dtype == torch.bfloat16
    # bf16 keys in, float32 similarities out (converted while written), float32 softmax
    assert seen == {"products": [torch.bfloat16, torch.float32], "softmax": [torch.float32]}
    assert step.bilateral_kernel(guidance).dtype == torch.float32  # default: the guidance's dtype
    # With the learned correction off, each pixel's kernel is a float32 softmax rounded once to bf16:
    # its taps sum to 1 within the taps' rounding (Σ |w|·2⁻⁹ = 2⁻⁹).
    for parameter in step.fixup_proj.parameters():
        parameter.zero_()
    sums = step.bilateral_kernel(guidance, torch.bfloat16).float().sum((-2, -1))
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=2**-9, rtol=0)


@torch.no_grad()
def test_bf16_step_tracks_float32():
    """A bf16 source runs the kernel correction and the adaptive convolution in bf16.

    Tolerances from bf16's unit roundoff u = 2⁻⁹: the kernel is rounded once after a correction worth
    0.1 × a two-layer bf16 product (a few u of the kernel's scale, ≤ 1e-2 absolute for entries ≤ 1);
    the step's output passes through about four bf16 roundings (kernel, two mixing products, output)
    of sums of non-negative-dominated terms, so it stays within 2 % of its own scale.
    """
    step = _randomised_step(radius=5, seed=6)
    generator = torch.Generator().manual_seed(9)
    source = torch.randn(2, 7, 6, 5, generator=generator)
    guidance = torch.randn(2, 3, 12, 10, generator=generator)
    kernel = step.bilateral_kernel(guidance, torch.bfloat16)
    torch.testing.assert_close(kernel.float(), step.bilateral_kernel(guidance), atol=1e-2, rtol=0)
    full = step(source, guidance)
    reduced = step(source.bfloat16(), guidance)
    assert reduced.dtype == torch.bfloat16 and step.fixup_proj[0].weight.dtype == torch.float32
    scale = full.abs().max().item()
    torch.testing.assert_close(reduced.float(), full, atol=0.02 * scale, rtol=0)
    # and the float32 guidance of a bf16 source is not rounded to bf16 before the range term
    assert torch.equal(step.bilateral_kernel(guidance, torch.float32), step.bilateral_kernel(guidance))


def test_out_dtype_converts_while_writing_without_changing_values():
    """bf16 products written out as float32 are exactly the bf16 results cast afterwards."""
    generator = torch.Generator().manual_seed(11)
    keys = torch.randn(2, 9, 10, 5, generator=generator).bfloat16()
    products = neighbour_dot_products(keys, 2, out_dtype=torch.float32)
    assert products.dtype == torch.float32
    assert torch.equal(products, neighbour_dot_products(keys, 2).float())
    source = torch.randn(2, 6, 5, 4, generator=generator).bfloat16()
    kernel = torch.randn(2, 10, 8, 5, 5, generator=generator).bfloat16()
    upsampled = adaptive_conv_upsampled(source, kernel, 2, out_dtype=torch.float32)
    assert upsampled.dtype == torch.float32 and upsampled.shape == (2, 6, 10, 8)
    assert upsampled.stride(1) == 1  # channels-last memory (channels innermost), as the next step reads it
    assert torch.equal(upsampled, adaptive_conv_upsampled(source, kernel, 2).float())
