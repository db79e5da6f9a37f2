"""Micro-case: one crop through the engine's upsampler vs the reference's unfold formulation.

The reference (FeatUp/SimFeatUp's pure-PyTorch path) computes each ×2 step's adaptive convolution by
bicubically upsampling the features, reflect-padding them, unfolding every d×d neighbourhood into a
(C·d², H·W) matrix and contracting it with the per-pixel kernels. Unfolded whole, that matrix is
12 GB for C = 512, d = 11 at 224²; here it is unfolded a band of rows at a time (same arithmetic,
bounded memory). Both paths share the module's kernels and its final 1×1 convolution, so the ratio
measures the adaptive-convolution formulation, and the output difference shows they agree.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from engine.bench import flops as fl

#: Bytes of unfolded neighbourhoods held at once by the reference path.
REFERENCE_BAND_BYTES = 512 * 2**20
#: The final residual 1×1 convolution's weight (stacks.OUTPUT_FIXUP_WEIGHT; FeatUp's constant).
OUTPUT_FIXUP_WEIGHT = 0.1


def reference_step(step, source: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
    """One ×2 joint bilateral step, unfold formulation. source (B, C, h, w), guidance (B, G, H, W)."""
    batch, channels = source.shape[:2]
    height, width = guidance.shape[-2:]
    radius = step.radius
    diameter = 2 * radius + 1
    upsampled = F.interpolate(source, size=(height, width), mode="bicubic", align_corners=False)
    padded = F.pad(upsampled, (radius, radius, radius, radius), mode="reflect")
    kernel = step.bilateral_kernel(guidance).reshape(batch, height, width, diameter * diameter)
    per_row = batch * channels * diameter * diameter * width * source.element_size()
    rows = max(1, REFERENCE_BAND_BYTES // per_row)
    out = source.new_empty(batch, channels, height, width)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        band = F.unfold(padded[:, :, top : bottom + 2 * radius], diameter)
        band = band.view(batch, channels, diameter * diameter, bottom - top, width)
        taps = kernel[:, top:bottom].permute(0, 3, 1, 2)  # (B, d², rows, W)
        out[:, :, top:bottom] = torch.einsum("bcthw,bthw->bchw", band, taps)
    return out


def reference_forward(upsampler, source: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
    """A four-step engine upsampler (``steps()``, ``fixup_proj``) run through ``reference_step``."""
    for step in upsampler.steps():
        height, width = source.shape[-2:]
        pooled = F.adaptive_avg_pool2d(guidance, (2 * height, 2 * width))
        source = reference_step(step, source, pooled)
    return source + OUTPUT_FIXUP_WEIGHT * upsampler.fixup_proj(source)


def reference_logits(upsampler, features, guidance, text) -> torch.Tensor:
    """Cosine logits (B, Q, H, W) the reference way: upsample all C channels, normalise, dot products."""
    dense = F.normalize(reference_forward(upsampler, features, guidance), dim=1)
    return torch.einsum("bchw,qc->bqhw", dense, text)


def _timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - began)
    times.sort()
    return times[len(times) // 2], out


def upsampler_micro_case(
    edge: int = 224,
    channels: int = 512,
    repeats: int = 3,
    reference_repeats: int = 1,
    seed: int = 0,
    queries: int = 14,
) -> dict:
    """Seconds of one (edge × edge) crop through the engine's jbu_one and through the reference
    formulation (random weights and features), their ratio, nominal GFLOP/s and the outputs' agreement.

    Also the whole per-crop step SegEarth-OV needs, upsampled features → cosine logits against
    ``queries`` text embeddings: the engine's ``upsampled_cosine_logits`` (when present) vs the reference
    (all channels upsampled, normalised, dot products)."""
    from engine.upsamplers.stacks import JBUOne

    generator = torch.Generator().manual_seed(seed)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        upsampler = JBUOne(channels).eval()
    finally:
        torch.random.set_rng_state(state)
    grid = edge // 16
    features = torch.randn(1, channels, grid, grid, generator=generator)
    guidance = torch.randn(1, 3, edge, edge, generator=generator)
    text = F.normalize(torch.randn(queries, channels, generator=generator), dim=-1)
    with torch.inference_mode():
        upsampler(features, guidance)  # warm-up (index tables, allocator)
        ours_s, ours = _timed(lambda: upsampler(features, guidance), repeats)
        reference_s, reference = _timed(
            lambda: reference_forward(upsampler, features, guidance), reference_repeats
        )
        logits = _logits_case(upsampler, features, guidance, text, reference, repeats)
    nominal = fl.jbu_flops(edge, edge, fl.JbuSpec(channels=channels))
    scale = reference.abs().max().item()
    if logits:
        total_reference = reference_s + logits["seconds_reference_logits_after_upsampling"]
        logits["speedup_logits"] = round(total_reference / logits["seconds_engine_logits"], 2)
    return {
        "case": "micro/upsampler-jbu_one",
        "device": "cpu",
        "dtype": "float32",
        "crop": [edge, edge],
        "channels": channels,
        "seconds_engine": round(ours_s, 4),
        "seconds_reference_unfold": round(reference_s, 4),
        "speedup": round(reference_s / ours_s, 2),
        "gflop": round(nominal / 1e9, 3),
        "achieved_gflops_engine": round(nominal / ours_s / 1e9, 2),
        "achieved_gflops_reference": round(nominal / reference_s / 1e9, 2),
        "max_abs_difference": float((ours.float() - reference.float()).abs().max()),
        "max_abs_reference": scale,
        **logits,
    }


def _logits_case(upsampler, features, guidance, text, reference_features, repeats: int) -> dict:
    try:
        from engine.upsamplers.cosine import upsampled_cosine_logits
    except ImportError:
        return {}
    size = tuple(guidance.shape[-2:])
    upsampled_cosine_logits(upsampler, features, guidance, text, size)  # warm-up
    ours_s, ours = _timed(lambda: upsampled_cosine_logits(upsampler, features, guidance, text, size), repeats)
    began = time.perf_counter()
    dense = F.normalize(reference_features, dim=1)  # the reference upsampling was timed above
    reference = torch.einsum("bchw,qc->bqhw", dense, text)
    cosine_s = time.perf_counter() - began
    return {
        "seconds_engine_logits": round(ours_s, 4),
        "seconds_reference_logits_after_upsampling": round(cosine_s, 4),
        "logits_max_abs_difference": float((ours - reference).abs().max()),
    }
