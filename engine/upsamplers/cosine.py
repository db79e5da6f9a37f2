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
#: Floor of a pixel's feature norm before dividing (``F.normalize``'s eps).
NORM_FLOOR = 1e-12


def is_linear_upsampler(upsampler: nn.Module) -> bool:
    """True if ``upsampler`` exposes ``channel_map``, ``spatial`` and ``output_bias`` (see module doc);
    ``spatial(source, guidance, out_dtype=None)`` must accept the dtype its result is wanted in."""
    return all(hasattr(upsampler, name) for name in ("channel_map", "spatial", "output_bias"))


class BilinearUpsampler(nn.Module):
    """A plain bilinear resize (``align_corners=False``) to the guidance image's size, in the linear
    upsampler protocol (no channel map, zero bias), so that ``upsampled_cosine_logits`` resizes a crop's
    subspace coordinates (≤ h·w + 1 of them) instead of all of its ``channels`` feature channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("zero_bias", torch.zeros(channels), persistent=False)  # moves with .to()

    def channel_map(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def output_bias(self) -> torch.Tensor:
        return self.zero_bias

    def spatial(self, source: torch.Tensor, guidance: torch.Tensor, out_dtype=None) -> torch.Tensor:
        resized = F.interpolate(source, size=guidance.shape[-2:], mode="bilinear", align_corners=False)
        return resized.to(out_dtype or resized.dtype)

    def forward(self, features: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """All channels resized (the path taken when the subspace would not save enough)."""
        return self.spatial(features, guidance)


def _normalised_logits(features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """features (B, C, H, W), text (B or 1, Q, C) -> (B, Q, H, W) cosine similarities.

    The Q dot products are divided by the pixel's norm (floored like ``F.normalize``) rather than
    normalising all C channels first: one pass fewer over the C-channel map.
    """
    norms = torch.linalg.vector_norm(features, dim=1, keepdim=True).clamp_min(NORM_FLOOR)
    logits = torch.einsum("bchw,bqc->bqhw", features, text.expand(features.shape[0], -1, -1))
    return logits.div_(norms)


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
    *,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Cosine logits (B, Q, H, W) of ``upsampler(patches, guidance)`` (resized to ``size``) with ``text``.

    patches: (B, D, h, w) low-res features; guidance: (B, 3, H', W') normalised image; text: (Q, D)
    L2-normalised embeddings; all in the upsampler's dtype. Equal to upsampling all D channels, resizing
    bilinearly to ``size`` when the upsampler's output differs, normalising per pixel and taking dot
    products; done in a per-crop subspace when the upsampler is linear and that saves work.

    ``compute_dtype`` (default: patches' dtype), e.g. bfloat16 under a bf16 backbone: the dtype of the
    subspace path's upsampling (its large products; ``spatial`` keeps its softmaxes in float32). The
    basis, the per-pixel norms and the cosines stay in patches' dtype. The black-box path ignores it.
    """
    batch, dim, height, width = patches.shape
    rank = min(dim, height * width + 1)
    if not is_linear_upsampler(upsampler) or upsampler.training or rank > (1 - MIN_CHANNEL_SAVING) * dim:
        dense = _to_size(upsampler(patches, guidance), size)
        return _normalised_logits(dense, text[None])
    mapped = upsampler.channel_map(patches).flatten(2)  # (B, D, h·w)
    bias = upsampler.output_bias().to(mapped.dtype)  # (D,)
    spanning = torch.cat([mapped, bias.view(1, dim, 1).expand(batch, dim, 1)], dim=2)
    # Orthonormal basis of each crop's span. Householder QR gives a Q orthonormal to the working
    # precision whatever the conditioning of the span (float32: |QᵀQ - I| ~ 1e-6, so norms are exact to
    # float32 rounding); float64 buys nothing for float32 features and costs about twice as much
    # (4 crops of 224², D = 512: ≈ 11 ms against ≈ 6 ms on 2 CPU cores).
    basis, _ = torch.linalg.qr(spanning.to(torch.promote_types(spanning.dtype, torch.float32)))  # (B, D, r)
    basis = basis.to(mapped.dtype)
    coordinates = (basis.transpose(1, 2) @ mapped).view(batch, rank, height, width)
    coordinates = coordinates.to(compute_dtype or coordinates.dtype)
    # A reduced-precision upsample is written out in the basis' dtype by its last step (no extra pass).
    upsampled = _to_size(upsampler.spatial(coordinates, guidance, out_dtype=basis.dtype), size)
    upsampled = upsampled + (basis.transpose(1, 2) @ bias).view(batch, rank, 1, 1)
    return _normalised_logits(upsampled, text @ basis)
