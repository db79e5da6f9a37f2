"""Cosine similarity of upsampled features with text embeddings, upsampling as few channels as possible.

SegEarth-OV upsamples (B, D, h, w) patch features to pixel resolution, L2-normalises each pixel and takes
its dot product with Q text embeddings. With a joint bilateral upsampler the output is
y_p = Σ_j S[p, j]·z_j + c: every output pixel is a combination of the h·w low-res vectors z_j plus a
constant c (``_FourStepUpsampler``'s parts). All y_p therefore lie in the span of {z_j} ∪ {c}, of
dimension r ≤ h·w + 1, which is 197 for a 224² crop of a /16 ViT against D = 512. With an orthonormal
basis V (D × r) of that span, y_p = V·u_p where u_p = S(Vᵀz)_p + Vᵀc, so |y_p| = |u_p| and
<t, y_p> = <Vᵀt, u_p>: upsampling the r coordinates instead of the D channels gives identical logits
(to float rounding) for D / r times less upsampling and cosine work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Use the subspace only when it saves at least this fraction of the channels (the QR costs a little).
MIN_CHANNEL_SAVING = 0.2


def is_linear_upsampler(upsampler: nn.Module) -> bool:
    """True if ``upsampler`` exposes ``channel_map``, ``spatial`` and ``output_bias`` (see module doc)."""
    return all(hasattr(upsampler, name) for name in ("channel_map", "spatial", "output_bias"))


def _normalised_logits(features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """features (B, C, H, W), text (B or 1, Q, C) -> (B, Q, H, W) cosine similarities."""
    features = F.normalize(features, dim=1)
    return torch.einsum("bchw,bqc->bqhw", features, text.expand(features.shape[0], -1, -1))


def _to_size(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to ``size`` (e.g. a /14 backbone under a ×16 upsampler); no-op when it fits."""
    if tuple(features.shape[-2:]) == tuple(size):
        return features
    return F.interpolate(features, size=size, mode="bilinear", align_corners=False)


def upsampled_cosine_logits(
    upsampler: nn.Module,
    patches: torch.Tensor,
    guidance: torch.Tensor,
    text: torch.Tensor,
    size: tuple[int, int],
) -> torch.Tensor:
    """Cosine logits (B, Q, H, W) of ``upsampler(patches, guidance)`` (resized to ``size``) with ``text``.

    patches: (B, D, h, w) low-res features; guidance: (B, 3, H', W') normalised image; text: (Q, D)
    L2-normalised embeddings; all in the upsampler's dtype. Equal to upsampling all D channels, resizing
    bilinearly to ``size`` when the upsampler's output differs, normalising per pixel and taking dot
    products; done in a per-crop subspace when the upsampler is linear and that saves work.
    """
    batch, dim, height, width = patches.shape
    rank = min(dim, height * width + 1)
    if not is_linear_upsampler(upsampler) or upsampler.training or rank > (1 - MIN_CHANNEL_SAVING) * dim:
        dense = _to_size(upsampler(patches, guidance), size)
        return _normalised_logits(dense, text[None])
    mapped = upsampler.channel_map(patches).flatten(2)  # (B, D, h·w)
    bias = upsampler.output_bias().to(mapped.dtype)  # (D,)
    spanning = torch.cat([mapped, bias.view(1, dim, 1).expand(batch, dim, 1)], dim=2)
    # Orthonormal basis of each crop's span, in float64: V's orthonormality is what makes norms exact.
    basis, _ = torch.linalg.qr(spanning.double(), mode="reduced")  # (B, D, r)
    basis = basis.to(mapped.dtype)
    coordinates = (basis.transpose(1, 2) @ mapped).view(batch, rank, height, width)
    upsampled = _to_size(upsampler.spatial(coordinates, guidance), size)
    upsampled = upsampled + (basis.transpose(1, 2) @ bias).view(batch, rank, 1, 1)
    return _normalised_logits(upsampled, text @ basis)
