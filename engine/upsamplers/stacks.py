"""×16 feature upsamplers built from four ×2 joint bilateral steps, and how to recognise their weights.

- ``jbu_stack`` (FeatUp): four independent steps ``up1``..``up4`` (7×7 kernels).
- ``jbu_one`` (SimFeatUp, SegEarth-OV): one step ``up`` (11×11 kernels) applied four times.
Both end with a residual 1×1 conv: out = x + 0.1 · fixup_proj(x). Guidance at each step is the
(normalised) image adaptive-average-pooled to twice the current feature size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import UserError
from engine.upsamplers.jbu import JointBilateralUpsampler

#: Per-kind step settings from the reference code: kernel radius (kernel edge 2r+1) and key dimension.
STACK_RADIUS = 3
ONE_RADIUS = 5
KEY_DIM = 32
GUIDANCE_DIM = 3
#: Steps of ×2 (×16 overall, one ViT-B/16 patch per output pixel), weight of the final residual conv and
#: dropout before it (inactive at inference).
STEPS = 4
OUTPUT_FIXUP_WEIGHT = 0.1
OUTPUT_DROPOUT = 0.2
CHECKPOINT_PREFIX = "upsampler."


def _pooled_guidance(guidance: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    height, width = source.shape[-2:]
    return F.adaptive_avg_pool2d(guidance, (2 * height, 2 * width))


class _FourStepUpsampler(nn.Module):
    """Shared forward: four guided ×2 steps then the residual 1×1 conv. (B, C, h, w) -> (B, C, 16h, 16w).

    Each step's kernels depend on the guidance only, so the steps are one *linear* spatial operator S
    applied to every channel alike, and the residual conv is a channel map A = I + 0.1·W plus a constant
    c = 0.1·b: forward(x) = A·S(x) + c = S(A·x) + c. Applying A on the low-res grid (256× fewer pixels
    for ×16) gives the same result for a fraction of the work; ``channel_map``, ``spatial`` and
    ``output_bias`` expose the three parts so callers can also run S on fewer channels
    (``engine.upsamplers.cosine``).
    """

    def __init__(self, feat_dim: int):
        super().__init__()
        self.fixup_proj = nn.Sequential(nn.Dropout2d(OUTPUT_DROPOUT), nn.Conv2d(feat_dim, feat_dim, 1))

    def steps(self) -> list[nn.Module]:
        raise NotImplementedError

    def channel_map(self, source: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> A·source = source + 0.1·W·source, per pixel (no bias)."""
        conv = self.fixup_proj[1]
        return source + OUTPUT_FIXUP_WEIGHT * F.conv2d(source, conv.weight.to(source.dtype))

    def spatial(
        self, source: torch.Tensor, guidance: torch.Tensor, out_dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """The four guided ×2 steps: (B, C', h, w) -> (B, C', 16h, 16w), any C', same operator per channel.

        The big products run in ``source``'s dtype (bf16 on matrix units), the kernels' softmaxes in at
        least float32 (see ``JointBilateralUpsampler.bilateral_kernel``); the result is in ``out_dtype``
        (default: source's), written directly by the last step.
        """
        # The guidance keeps at least its own precision (the range softmaxes want float32 under a bf16
        # source) and follows a wider source (float64 checks).
        guidance = guidance.to(torch.promote_types(guidance.dtype, source.dtype))
        steps = self.steps()
        for index, step in enumerate(steps):
            last = index == len(steps) - 1
            source = step(source, _pooled_guidance(guidance, source), out_dtype if last else None)
        return source

    def output_bias(self) -> torch.Tensor:
        """(C,) constant c = 0.1·b added to every output pixel."""
        return OUTPUT_FIXUP_WEIGHT * self.fixup_proj[1].bias

    def forward(self, source: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """source: (B, C, h, w) features; guidance: (B, 3, H, W) normalised image (any H, W)."""
        if self.training:  # dropout acts on the high-res features: keep the reference's order
            upsampled = self.spatial(source, guidance)
            return upsampled + OUTPUT_FIXUP_WEIGHT * self.fixup_proj(upsampled)
        upsampled = self.spatial(self.channel_map(source), guidance)
        return upsampled + self.output_bias().to(upsampled.dtype).view(1, -1, 1, 1)


class JBUStack(_FourStepUpsampler):
    """FeatUp's ``jbu_stack``: state-dict keys up1.* .. up4.*, fixup_proj.1.*."""

    def __init__(self, feat_dim: int):
        super().__init__(feat_dim)
        self.up1 = JointBilateralUpsampler(GUIDANCE_DIM, KEY_DIM, STACK_RADIUS)
        self.up2 = JointBilateralUpsampler(GUIDANCE_DIM, KEY_DIM, STACK_RADIUS)
        self.up3 = JointBilateralUpsampler(GUIDANCE_DIM, KEY_DIM, STACK_RADIUS)
        self.up4 = JointBilateralUpsampler(GUIDANCE_DIM, KEY_DIM, STACK_RADIUS)

    def steps(self) -> list[nn.Module]:
        return [self.up1, self.up2, self.up3, self.up4]


class JBUOne(_FourStepUpsampler):
    """SimFeatUp's ``jbu_one``: state-dict keys up.*, fixup_proj.1.*."""

    def __init__(self, feat_dim: int):
        super().__init__(feat_dim)
        self.up = JointBilateralUpsampler(GUIDANCE_DIM, KEY_DIM, ONE_RADIUS)

    def steps(self) -> list[nn.Module]:
        return [self.up] * STEPS


UPSAMPLER_KINDS: dict[str, type[_FourStepUpsampler]] = {"jbu_stack": JBUStack, "jbu_one": JBUOne}


def build_upsampler(kind: str, dim: int) -> nn.Module:
    """A fresh (random-weight) upsampler of ``kind`` ("jbu_one" | "jbu_stack") for ``dim`` channels."""
    if kind not in UPSAMPLER_KINDS:
        raise UserError(f"unknown upsampler {kind!r}; known: {', '.join(UPSAMPLER_KINDS)}")
    return UPSAMPLER_KINDS[kind](dim).eval()


def upsampler_kind(state_dict: dict[str, torch.Tensor]) -> str:
    """'jbu_one' or 'jbu_stack' from the (prefix-stripped) keys of a state dict."""
    if any(key.startswith("up.") for key in state_dict):
        return "jbu_one"
    if any(key.startswith("up1.") for key in state_dict):
        return "jbu_stack"
    raise UserError(
        "the upsampler weights are neither SimFeatUp 'jbu_one' (keys up.*) "
        "nor FeatUp 'jbu_stack' (keys up1.*)"
    )


def upsampler_from_state_dict(state_dict: dict[str, torch.Tensor]) -> tuple[nn.Module, str]:
    """Build and strictly load an upsampler from a state dict (Lightning's ``upsampler.`` prefix optional).

    Pass ``checkpoint["state_dict"]`` of a FeatUp/SimFeatUp Lightning checkpoint; keys outside the
    upsampler (e.g. a downsampler's) are ignored when the prefix is present.
    Returns (module in eval mode, kind).
    """
    if any(key.startswith(CHECKPOINT_PREFIX) for key in state_dict):
        state_dict = {
            key[len(CHECKPOINT_PREFIX) :]: value
            for key, value in state_dict.items()
            if key.startswith(CHECKPOINT_PREFIX)
        }
    kind = upsampler_kind(state_dict)
    weight = state_dict.get("fixup_proj.1.weight")
    if weight is None:
        raise UserError("the upsampler weights lack 'fixup_proj.1.weight'; is this a FeatUp JBU checkpoint?")
    module = build_upsampler(kind, int(weight.shape[0]))
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise UserError(f"the {kind} upsampler weights do not fit the expected layout: {error}") from error
    return module.eval(), kind
