"""One learned joint bilateral upsampling step (FeatUp's ``JBULearnedRange``), ×2, in pure PyTorch.

For each high-res pixel a d×d kernel (d = 2·radius + 1) is built from
- a range term: softmax over taps of exp(range_temp) · <φ(g)[centre], φ(g)[tap]>, φ a learned 1×1-conv
  projection of the guidance image g (reflect-padded at the borders);
- a spatial term: exp(-|offset|² / (2 σ²)) with offsets spanning [-1, 1] across the kernel, σ learned;
their product normalised to sum 1, plus 0.1 × a learned 1×1-conv correction from (kernel, guidance).
The kernel is applied to the bicubic upsample of the low-res features (reflect-padded), see
``engine.upsamplers.adaptive_conv``. Parameter names match FeatUp/SimFeatUp checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.runtime.onednn_linear import linear  # oneDNN for CPU float32
from engine.upsamplers.adaptive_conv import adaptive_conv_upsampled
from engine.upsamplers.neighbour_similarity import neighbour_dot_products

#: FeatUp's constants: weight of the learned kernel correction, floor of the kernel normaliser,
#: clamp of the range temperature, dropout rate inside the 1×1-conv stacks (inactive at inference).
KERNEL_FIXUP_WEIGHT = 0.1
KERNEL_SUM_FLOOR = 1e-7
RANGE_TEMPERATURE_BOUNDS = (1e-4, 1e4)
PROJECTION_DROPOUT = 0.1


def range_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the range term for guidance in ``dtype``: float32 for 16-bit floats, else ``dtype``."""
    return torch.promote_types(dtype, torch.float32)


def _pointwise(stack: nn.Sequential, features: torch.Tensor) -> torch.Tensor:
    """Apply a (1×1 conv, GELU, Dropout2d, 1×1 conv) stack to channels-last (B, H, W, C) features.

    At inference the convs are matrix products on the last axis (no layout changes); in training mode
    the modules run as defined, so that Dropout2d drops whole channels as in the reference.
    """
    if stack.training:
        return stack(features.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    first, last = stack[0], stack[3]
    dtype = features.dtype  # the parameters follow the features (bf16 products under a bf16 backbone)
    hidden = F.gelu(linear(features, first.weight[:, :, 0, 0].to(dtype), first.bias.to(dtype)))
    return linear(hidden, last.weight[:, :, 0, 0].to(dtype), last.bias.to(dtype))


class JointBilateralUpsampler(nn.Module):
    """source (B, C, h, w) + guidance (B, G, H, W) -> (B, C, H, W); H, W are normally 2h, 2w."""

    def __init__(self, guidance_dim: int = 3, key_dim: int = 32, radius: int = 3):
        super().__init__()
        self.radius = radius
        self.diameter = 2 * radius + 1
        taps = self.diameter**2
        self.range_temp = nn.Parameter(torch.tensor(0.0))
        self.range_proj = nn.Sequential(
            nn.Conv2d(guidance_dim, key_dim, 1),
            nn.GELU(),
            nn.Dropout2d(PROJECTION_DROPOUT),
            nn.Conv2d(key_dim, key_dim, 1),
        )
        self.fixup_proj = nn.Sequential(
            nn.Conv2d(guidance_dim + taps, taps, 1),
            nn.GELU(),
            nn.Dropout2d(PROJECTION_DROPOUT),
            nn.Conv2d(taps, taps, 1),
        )
        self.sigma_spatial = nn.Parameter(torch.tensor(1.0))

    def spatial_kernel(self) -> torch.Tensor:
        """(d²,) Gaussian of the tap offsets (offsets scaled to [-1, 1]), taps row-major."""
        offsets = torch.linspace(-1, 1, self.diameter, device=self.sigma_spatial.device)
        squared = (offsets[:, None] ** 2 + offsets[None, :] ** 2).flatten()
        return torch.exp(-squared / (2 * self.sigma_spatial**2))

    def _range_logits_last(self, guidance: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """(B, H, W, d²) channels-last temperature-scaled similarities (the range softmax's input).

        The key projection and the neighbour dot products run in ``dtype`` (default: guidance's); the
        result is in ``range_dtype(guidance.dtype)``, at least float32, for the temperature and softmax.
        """
        keys = _pointwise(self.range_proj, guidance.permute(0, 2, 3, 1).to(dtype or guidance.dtype))
        logits = neighbour_dot_products(keys.contiguous(), self.radius, out_dtype=range_dtype(guidance.dtype))
        return logits.mul_(self.range_temp.exp().clamp(*RANGE_TEMPERATURE_BOUNDS))

    def range_kernel(self, guidance: torch.Tensor) -> torch.Tensor:
        """(B, d², H, W) softmax over taps of the scaled similarity of projected guidance to neighbours."""
        return F.softmax(self._range_logits_last(guidance), dim=-1).permute(0, 3, 1, 2)

    def bilateral_kernel(self, guidance: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """(B, H, W, d, d) per-pixel kernels for guidance (B, G, H, W), in ``dtype`` (default guidance's).

        The matrix products (key projection, neighbour dot products, the learned correction's 1×1 convs
        over d² + G → d² → d² channels) run in ``dtype``; the temperature, the softmax and the spatial
        weighting in ``range_dtype(guidance.dtype)``, at least float32, so that exp() and the sum over
        taps see no further rounding than the products' outputs.
        """
        dtype = dtype or guidance.dtype
        # Channels-last throughout: taps are the last axis, the 1×1 convs are plain matrix products.
        spatial = self.spatial_kernel()
        logits = self._range_logits_last(guidance, dtype)
        if spatial.min() >= KERNEL_SUM_FLOOR:
            # softmax(l)·s / Σ softmax(l)·s = softmax(l + log s) when the sum cannot fall below the floor
            # (it is at least min s): one pass over the taps instead of four.
            combined = F.softmax(logits.add_(spatial.log()), dim=-1)
        else:
            combined = F.softmax(logits, dim=-1) * spatial
            combined = combined / combined.sum(-1, keepdim=True).clamp(KERNEL_SUM_FLOOR)
        taps = combined.shape[-1]
        # One cast of the range kernel, reused as the correction's input and as the sum's first term.
        fixup_input = torch.cat([combined.to(dtype), guidance.permute(0, 2, 3, 1).to(dtype)], dim=-1)
        combined = fixup_input[..., :taps] + KERNEL_FIXUP_WEIGHT * _pointwise(self.fixup_proj, fixup_input)
        batch, height, width, _ = combined.shape
        return combined.view(batch, height, width, self.diameter, self.diameter)

    def forward(
        self, source: torch.Tensor, guidance: torch.Tensor, out_dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """source (B, C, h, w) in the compute dtype (float32, or bf16/fp16 for fast matrix units); the
        guidance in any float dtype (the softmaxes run in at least float32). Returns ``out_dtype``
        (default: source's)."""
        if source.shape[0] != guidance.shape[0]:
            raise ValueError(f"source batch {source.shape[0]} != guidance batch {guidance.shape[0]}")
        kernel = self.bilateral_kernel(guidance, source.dtype)
        return adaptive_conv_upsampled(source, kernel, self.radius, out_dtype=out_dtype)
