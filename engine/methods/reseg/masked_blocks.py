"""Run an open_clip ``VisionTransformer`` with a different attention mask in each block.

open_clip's ``ResidualAttentionBlock.forward(x, attn_mask=...)`` already accepts a mask; its
``Transformer`` just passes the same one to every block. So instead of forking open_clip, this module
walks the tower's own modules (patch embedding, position embedding, ln_pre, each block, ln_post, proj)
and hands each block its own mask. Blocks keep their residual and MLP: the masks only restrict which
tokens attention may mix (as the reference does by setting each block's ``attn_mask``).

Every token — [CLS] and patches — goes through ln_post and proj, so patch tokens land in the joint
image-text embedding space (the reference compares them with text embeddings directly).
"""

from __future__ import annotations

import torch

from engine.clip.positional import interpolate_positional_embedding


def vision_depth(visual) -> int:
    """Number of transformer blocks in an open_clip vision tower."""
    return len(visual.transformer.resblocks)


def _check_supported(visual) -> None:
    missing = [
        name
        for name in ("conv1", "class_embedding", "positional_embedding", "ln_pre", "ln_post")
        if not hasattr(visual, name)
    ]
    if missing or getattr(visual, "attn_pool", None) is not None:
        raise ValueError(
            "ReSeg-CLIP needs a plain open_clip ViT vision tower (conv patch embedding, class token, "
            f"no attention pooling); this one lacks {missing or 'plain pooling'}"
        )


def embed_patches(visual, pixels: torch.Tensor) -> torch.Tensor:
    """Normalised pixels (B, 3, H, W), H and W multiples of the patch size → tokens after ln_pre,
    (B, 1 + gh·gw, width), [CLS] first; position embeddings resized to the (gh, gw) grid."""
    _check_supported(visual)
    x = visual.conv1(pixels)  # (B, width, gh, gw)
    grid = (x.shape[-2], x.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1)
    x = x + interpolate_positional_embedding(visual.positional_embedding, grid).to(x.dtype)
    return visual.ln_pre(x)


def num_heads(visual) -> int:
    return visual.transformer.resblocks[0].attn.num_heads


def run_blocks(visual, tokens: torch.Tensor, masks: list[torch.Tensor | None]) -> torch.Tensor:
    """Apply every block of the tower to ``tokens`` (B, T, width); ``masks[i]`` is block i's additive
    mask, (B · heads, T, T) (see attention_masks.additive_bias), or None for unrestricted attention."""
    blocks = visual.transformer.resblocks
    if len(masks) != len(blocks):
        raise ValueError(f"{len(masks)} attention masks for {len(blocks)} blocks")
    batch_first = getattr(visual.transformer, "batch_first", True)
    x = tokens if batch_first else tokens.transpose(0, 1)
    for block, mask in zip(blocks, masks):
        x = block(x, attn_mask=mask)
    return x if batch_first else x.transpose(0, 1)


def project_tokens(visual, tokens: torch.Tensor) -> torch.Tensor:
    """ln_post and proj on every token: (B, T, width) → (B, T, embed_dim)."""
    x = visual.ln_post(tokens)
    return x @ visual.proj if visual.proj is not None else x


def masked_forward(visual, pixels: torch.Tensor, masks: list[torch.Tensor | None]) -> torch.Tensor:
    """Normalised pixels (B, 3, H, W) → projected tokens (B, 1 + gh·gw, embed_dim), block i attending
    under ``masks[i]``."""
    return project_tokens(visual, run_blocks(visual, embed_patches(visual, pixels), masks))
