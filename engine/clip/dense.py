"""Dense CLIP: per-patch and class-token features from an open_clip ViT with a modified last block.

The first N-1 transformer blocks run as open_clip defines them; the last block is replaced by
``engine.clip.attention.modified_last_block`` using that block's own parameters (no fork of open_clip).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.clip.attention import AttentionMode, attention_mode, modified_last_block
from engine.clip.positional import interpolate_positional_embedding


@dataclass
class DenseFeatures:
    """Output of ``DenseClip``.

    patches: (B, D, gh, gw) projected patch features of the padded image (not normalised).
    cls: (B, D) projected class-token feature of the modified last layer (not normalised).
    padded: (B, 3, Hp, Wp) the padded normalised images (guidance for feature upsamplers).
    padding: (left, right, top, bottom) pixels added to reach a multiple of the patch size.
    """

    patches: torch.Tensor
    cls: torch.Tensor
    padded: torch.Tensor
    padding: tuple[int, int, int, int]


def patch_padding(height: int, width: int, patch: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding up to a multiple of ``patch``; odd pixel right/bottom."""
    extra_w = (-width) % patch
    extra_h = (-height) % patch
    return extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2


def remove_padding(tensor: torch.Tensor, padding: tuple[int, int, int, int]) -> torch.Tensor:
    """Crop (..., Hp, Wp) back to the unpadded (..., H, W) region."""
    left, right, top, bottom = padding
    return tensor[..., top : tensor.shape[-2] - bottom, left : tensor.shape[-1] - right]


class DenseClip(nn.Module):
    """Patch features of an open_clip ``VisionTransformer`` for images of any size.

    ``visual``: ``clip_model.visual``; ``attention``: a mode of ``engine.clip.attention.ATTENTION_MODES``.
    """

    def __init__(self, visual: nn.Module, attention: str | AttentionMode = "segearth"):
        super().__init__()
        if getattr(visual, "attn_pool", None) is not None:
            raise ValueError(
                "dense CLIP needs a ViT with class-token pooling; attentional pooling is unsupported"
            )
        if not hasattr(visual, "transformer") or not hasattr(visual, "conv1"):
            raise ValueError(f"dense CLIP needs an open_clip VisionTransformer, got {type(visual).__name__}")
        self.visual = visual
        self.mode = attention_mode(attention) if isinstance(attention, str) else attention
        patch = visual.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, tuple | list) else patch)

    def _tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Embedded tokens (B, 1 + gh*gw, width) after ln_pre, and the patch grid."""
        visual = self.visual
        x = visual.conv1(images.to(visual.conv1.weight.dtype))
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + interpolate_positional_embedding(visual.positional_embedding, grid).to(x.dtype)
        x = visual.patch_dropout(x)
        return visual.ln_pre(x), grid

    def forward(self, images: torch.Tensor) -> DenseFeatures:
        """``images``: (B, 3, H, W) CLIP-normalised, any H, W; padded to the patch size like SegEarth-OV."""
        height, width = images.shape[-2:]
        padding = patch_padding(height, width, self.patch_size)
        padded = F.pad(images, padding) if any(padding) else images
        x, grid = self._tokens(padded)
        transformer = self.visual.transformer
        blocks = transformer.resblocks
        batch_first = getattr(transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        for block in blocks[:-1]:
            x = block(x)
        if not batch_first:
            x = x.transpose(0, 1)
        x = modified_last_block(blocks[-1], x, self.mode, grid)
        if getattr(self.visual, "final_ln_after_pool", False):
            cls, tokens = self.visual.ln_post(x[:, 0]), x[:, 1:]
        else:
            x = self.visual.ln_post(x)
            cls, tokens = x[:, 0], x[:, 1:]
        if self.visual.proj is not None:
            cls = cls @ self.visual.proj
            tokens = tokens @ self.visual.proj
        patches = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)
        return DenseFeatures(patches=patches, cls=cls, padded=padded, padding=padding)
