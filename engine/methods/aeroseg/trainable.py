"""Which parameters train: CLIP's query and value projections (both towers), never its keys; SAM frozen.

open_clip's attention keeps q, k and v in one fused ``in_proj_weight`` (3D, D). Masking its gradient
would not keep the key rows fixed under AdamW's weight decay, so the fused tensor is split into three
parameters: query and value train, the key is a buffer. A forward pre-hook reassembles the fused tensor
(a plain attribute) before every call, so open_clip's own ``nn.MultiheadAttention`` runs unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

#: Names the split attention modules use for their three parts (state-dict keys end in these).
PARTS = ("q_proj_weight_split", "k_proj_weight_split", "v_proj_weight_split")


def _assemble(module: nn.MultiheadAttention, _inputs) -> None:
    module.in_proj_weight = torch.cat(
        [module.q_proj_weight_split, module.k_proj_weight_split, module.v_proj_weight_split]
    )
    module.in_proj_bias = torch.cat([module.q_bias_split, module.k_bias_split, module.v_bias_split])


def split_in_projection(attention: nn.MultiheadAttention) -> None:
    """Replace ``attention``'s fused in-projection by trainable q, v parameters and a frozen k buffer."""
    if hasattr(attention, "q_proj_weight_split"):
        return
    if not attention._qkv_same_embed_dim or attention.in_proj_bias is None:
        raise ValueError("AerOSeg expects CLIP attention with a fused, biased in-projection")
    weight = attention.in_proj_weight.detach()
    bias = attention.in_proj_bias.detach()
    q, k, v = weight.chunk(3)
    qb, kb, vb = bias.chunk(3)
    del attention.in_proj_weight
    del attention.in_proj_bias
    attention.q_proj_weight_split = nn.Parameter(q.clone())
    attention.v_proj_weight_split = nn.Parameter(v.clone())
    attention.q_bias_split = nn.Parameter(qb.clone())
    attention.v_bias_split = nn.Parameter(vb.clone())
    attention.register_buffer("k_proj_weight_split", k.clone())
    attention.register_buffer("k_bias_split", kb.clone())
    attention.register_forward_pre_hook(_assemble)
    _assemble(attention, ())


def prepare_clip(clip: nn.Module) -> list[nn.Parameter]:
    """Freeze ``clip`` except its attention query/value projections; returns those parameters."""
    clip.requires_grad_(False)
    trained: list[nn.Parameter] = []
    for module in clip.modules():
        if isinstance(module, nn.MultiheadAttention):
            split_in_projection(module)
            for name in ("q_proj_weight_split", "q_bias_split", "v_proj_weight_split", "v_bias_split"):
                parameter = getattr(module, name)
                parameter.requires_grad_(True)
                trained.append(parameter)
    return trained


def trained_clip_state(clip: nn.Module) -> dict[str, torch.Tensor]:
    """The trained part of ``clip``'s state: the split query and value tensors by their names."""
    return {name: p.detach() for name, p in clip.named_parameters() if p.requires_grad}
