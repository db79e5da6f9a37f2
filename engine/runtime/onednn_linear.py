"""Float32 linear layers through oneDNN on the CPU, where PyTorch's default path is slow.

PyTorch sends a float32 ``F.linear`` on the CPU to MKL, which takes its AVX2 code path on AMD processors
even when they have AVX-512: on a 2-thread AMD Zen 5 it reaches ~150-180 GFLOP/s, while oneDNN's
``mkldnn::_linear_pointwise`` computes the same product at ~300-390 GFLOP/s. (bfloat16 linears already go
to oneDNN, so only float32 needs help.)

``use_onednn_linears(model)`` swaps, in place, each ``nn.Linear`` for an ``OneDnnLinear`` and each
self-attention ``nn.MultiheadAttention`` (whose in-projection is a bare weight, never an ``nn.Linear``)
for an ``OneDnnSelfAttention``. The replacements share the original Parameter objects, keep the state
dict keys, and decide at every call: the oneDNN route is taken only for CPU float32 inference (no
autocast, no gradient needed); anything else — another device or dtype, training with gradients,
attention weights asked for, key padding masks — runs the original computation unchanged.

Weights are not prepacked into oneDNN's blocked layout: measured on the same machine it gained ~5%
at best (some shapes lost), for a second copy of every weight in memory and a cache to keep in sync.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import register_flop_formula


def _count_linear_flops(input_shape, weight_shape, *_args, **_kwargs) -> int:
    """FLOPs of one oneDNN linear: 2 · rows · out · in (torch's FlopCounterMode knows only aten ops)."""
    return 2 * math.prod(input_shape[:-1]) * weight_shape[0] * weight_shape[1]


if hasattr(torch.ops.mkldnn, "_linear_pointwise"):
    register_flop_formula(torch.ops.mkldnn._linear_pointwise)(_count_linear_flops)


def _agrees_on_small_case(compute) -> bool:
    """True if ``compute(x, weight, bias, other)`` equals ``x @ weight.T + bias + other`` on a small case,
    False where oneDNN or the op is missing from this build or unusable on this CPU."""
    if not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    x, weight, bias, other = (torch.randn(s, generator=generator) for s in ((5, 7), (3, 7), (3,), (5, 3)))
    try:
        with torch.no_grad():
            got = compute(x, weight, bias, other)
    except (AttributeError, RuntimeError):
        return False
    return torch.allclose(got, F.linear(x, weight, bias) + other, rtol=1e-4, atol=1e-5)


@functools.cache
def onednn_linear_available() -> bool:
    """True if this PyTorch build has oneDNN's linear op and it agrees with ``F.linear`` on a small case."""
    return _agrees_on_small_case(
        lambda x, w, b, other: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "") + other
    )


@functools.cache
def onednn_residual_linear_available() -> bool:
    """True if oneDNN's linear takes an "add" post-op here (the residual summed in the product's epilogue)."""
    return _agrees_on_small_case(
        lambda x, w, b, other: torch.ops.mkldnn._linear_pointwise.binary(x, other, w, b, "add")
    )


def onednn_route_applies(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """True when ``x @ weight.T + bias`` may go to oneDNN: dense float32 CPU tensors, no autocast (it would
    expect a lower-precision product), and no autograd graph to record (the op has no backward)."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    if any(t.device.type != "cpu" or t.dtype != torch.float32 or t.layout != torch.strided for t in tensors):
        return False
    if torch.is_autocast_enabled("cpu"):
        return False
    return not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors)


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` through oneDNN; the caller has checked ``onednn_route_applies``. x: (..., in)."""
    rows = x.reshape(-1, x.shape[-1])
    if not rows.is_contiguous():
        rows = rows.contiguous()
    if not weight.is_contiguous():
        weight = weight.contiguous()
    out = torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")
    return out.view(*x.shape[:-1], weight.shape[0])


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear``, through oneDNN where that applies."""
    if onednn_route_applies(x, weight, bias):
        return onednn_linear(x, weight, bias)
    return F.linear(x, weight, bias)


class OneDnnLinear(nn.Linear):
    """An ``nn.Linear`` whose float32 CPU inference goes through oneDNN; same Parameters as ``source``."""

    def __init__(self, source: nn.Linear):
        # nn.Linear.__init__ would allocate (and initialise) a weight only to throw it away.
        nn.Module.__init__(self)
        self.in_features = source.in_features
        self.out_features = source.out_features
        self.weight = source.weight
        self.register_parameter("bias", source.bias)  # registered even when None, as nn.Linear does
        self.train(source.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class OneDnnSelfAttention(nn.Module):
    """Stands in for a self-attention ``nn.MultiheadAttention`` (same attributes and state dict keys):
    the packed q/k/v projection and the output projection through oneDNN, the attention itself through
    ``F.scaled_dot_product_attention``. Calls it cannot serve exactly go to the original module."""

    def __init__(self, source: nn.MultiheadAttention):
        super().__init__()
        if not self.can_replace(source):
            raise ValueError("only packed-projection self-attention without bias_k/bias_v can be replaced")
        self.embed_dim = source.embed_dim
        self.num_heads = source.num_heads
        self.head_dim = source.head_dim
        self.batch_first = source.batch_first
        self.dropout = source.dropout
        self.in_proj_weight = source.in_proj_weight
        self.register_parameter("in_proj_bias", source.in_proj_bias)  # None is registered, as MHA does
        self.out_proj = OneDnnLinear(source.out_proj)
        self.train(source.training)
        # Kept outside the module tree so that its parameters do not appear twice in the state dict.
        object.__setattr__(self, "_original", source)

    @staticmethod
    def can_replace(attention: nn.MultiheadAttention) -> bool:
        return (
            attention._qkv_same_embed_dim
            and attention.bias_k is None
            and attention.bias_v is None
            and not attention.add_zero_attn
        )

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``nn.MultiheadAttention.forward``'s signature and defaults (so need_weights=True, the default,
        takes the original path); returns (output, None) on the oneDNN path."""
        options = {
            "key_padding_mask": key_padding_mask,
            "need_weights": need_weights,
            "attn_mask": attn_mask,
            "average_attn_weights": average_attn_weights,
            "is_causal": is_causal,
        }
        fast = (
            query is key
            and key is value
            and query.dim() == 3
            and key_padding_mask is None
            and not need_weights
            and not is_causal
            and (not self.training or self.dropout == 0.0)
            and onednn_route_applies(query, self.in_proj_weight, self.in_proj_bias)
            and onednn_route_applies(query, self.out_proj.weight, self.out_proj.bias)
        )
        if not fast:
            return self._original_forward(query, key, value, **options)
        mask = self._sdpa_mask(attn_mask, query)
        if attn_mask is not None and mask is None:
            return self._original_forward(query, key, value, **options)
        return self._attend(query, mask), None

    def _attend(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # Work in the input's own layout ((B, N, E) or (N, B, E)) so the projections read contiguous rows.
        batch_axis, token_axis = (0, 1) if self.batch_first else (1, 0)
        qkv = onednn_linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(*x.shape[:2], 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, batch_axis, 3, token_axis, 4).unbind(0)  # each (B, heads, N, head_dim)
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if self.batch_first:
            mixed = mixed.permute(0, 2, 1, 3)  # (B, N, heads, head_dim)
        else:
            mixed = mixed.permute(2, 0, 1, 3)  # (N, B, heads, head_dim)
        return self.out_proj(mixed.reshape(*x.shape[:2], self.embed_dim))

    def _sdpa_mask(self, attn_mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
        """MHA's attn_mask — (N, N) or (B·heads, N, N) batch-major; bool True = blocked, float = added —
        as a mask for scaled_dot_product_attention (bool True = allowed). None if absent or unusable."""
        if attn_mask is None:
            return None
        batch, tokens = (x.shape[0], x.shape[1]) if self.batch_first else (x.shape[1], x.shape[0])
        if attn_mask.shape == (tokens, tokens):
            mask = attn_mask
        elif attn_mask.shape == (batch * self.num_heads, tokens, tokens):
            mask = attn_mask.view(batch, self.num_heads, tokens, tokens)
        else:
            return None  # the original module reports the shape error
        if mask.dtype == torch.bool:
            return mask.logical_not()
        if not mask.is_floating_point():
            return None
        return mask.to(x.dtype)

    def _original_forward(self, query, key, value, **options) -> tuple[torch.Tensor, torch.Tensor | None]:
        original: nn.MultiheadAttention = self._original
        # Follow anything done to this module since the swap (train/eval, Parameters replaced by
        # load_state_dict(assign=True) or by a .to() that does not convert in place).
        original.train(self.training)
        original.in_proj_weight = self.in_proj_weight
        original.in_proj_bias = self.in_proj_bias
        original.out_proj.weight = self.out_proj.weight
        original.out_proj.bias = self.out_proj.bias
        return original(query, key, value, **options)


def _swappable_linear(module: nn.Module) -> bool:
    """Plain ``nn.Linear`` behaviour (subclasses that keep its forward, such as MHA's
    NonDynamicallyQuantizableLinear), with nothing attached that a replacement would drop."""
    return (
        isinstance(module, nn.Linear)
        and not isinstance(module, OneDnnLinear)
        and type(module).forward is nn.Linear.forward
        and not torch.nn.utils.parametrize.is_parametrized(module)
        and not _has_hooks(module)
    )


def _swappable_attention(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.MultiheadAttention)
        and type(module).forward is nn.MultiheadAttention.forward
        and OneDnnSelfAttention.can_replace(module)
        and not _has_hooks(module)
    )


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks)


def use_onednn_linears(module: nn.Module) -> int:
    """Swap, in place, every ``nn.Linear`` and self-attention ``nn.MultiheadAttention`` below ``module``
    for its oneDNN counterpart; returns how many were swapped (0 when oneDNN is unavailable).

    The module keeps working on any device and dtype: the replacements choose their route per call.
    ``module`` itself is not replaced, only its descendants. A module shared by several parents stays
    shared."""
    if not onednn_linear_available():
        return 0
    replacements: dict[int, nn.Module] = {}

    def swap_children(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if id(child) in replacements:
                setattr(parent, name, replacements[id(child)])
            elif _swappable_linear(child):
                replacements[id(child)] = OneDnnLinear(child)
                setattr(parent, name, replacements[id(child)])
            elif _swappable_attention(child):
                # Its out_proj is never called as a module (MHA reads its weight), so no need to descend.
                replacements[id(child)] = OneDnnSelfAttention(child)
                setattr(parent, name, replacements[id(child)])
            elif not isinstance(child, (nn.MultiheadAttention, OneDnnLinear, OneDnnSelfAttention)):
                swap_children(child)

    swap_children(module)
    return len(replacements)
