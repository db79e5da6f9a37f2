"""Patch segment ids → additive attention masks for a ViT with a leading [CLS] token.

Rule (ReSeg-CLIP): patch i may attend to patch j iff their segment ids are equal; [CLS] attends only to
itself; no patch attends to [CLS]. Masks are additive biases (0 = allowed, -inf = blocked) because
open_clip casts any mask to the activations' dtype before attention, which would turn a boolean mask
into harmless 0/1 offsets. Every token may always attend to itself, so no softmax row is empty.
"""

from __future__ import annotations

import torch


def allowed_from_patch_ids(patch_ids: torch.Tensor) -> torch.Tensor:
    """patch_ids: (B, N) integer (row-major patches). Returns (B, 1 + N, 1 + N) bool, True = may attend."""
    b, n = patch_ids.shape
    allowed = torch.zeros(b, n + 1, n + 1, dtype=torch.bool, device=patch_ids.device)
    allowed[:, 1:, 1:] = patch_ids[:, :, None] == patch_ids[:, None, :]
    allowed[:, 0, 0] = True
    return allowed


def self_only_allowed(batch: int, n_tokens: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, T, T) bool identity: every token (including [CLS]) attends only to itself."""
    eye = torch.eye(n_tokens, dtype=torch.bool, device=device)
    return eye.expand(batch, n_tokens, n_tokens)


def additive_bias(allowed: torch.Tensor, num_heads: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, T, T) bool → (B · num_heads, T, T) additive mask in torch.nn.MultiheadAttention's 3-D layout
    (batch-major: row b · num_heads + h is head h of item b)."""
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    bias.masked_fill_(~allowed, float("-inf"))
    return bias.repeat_interleave(num_heads, dim=0)
