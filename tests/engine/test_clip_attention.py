"""The modified last block's attention modes against direct per-head formulas."""

from __future__ import annotations

import math

import pytest
import torch

from engine.clip.attention import (
    ATTENTION_MODES,
    attention_mode,
    gaussian_neighbourhood_bias,
    modified_last_block,
)
from engine.errors import UserError
from engine.models.architectures import TINY_VIT_16, create_clip

GRID = (3, 4)


@pytest.fixture(scope="module")
def block_and_tokens():
    model = create_clip(TINY_VIT_16, seed=3)
    block = model.visual.transformer.resblocks[-1]
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 1 + GRID[0] * GRID[1], 64, generator=generator)
    return block, tokens


def _softmax_rows(matrix):
    """Row softmax written out: exp(x - max) / sum."""
    out = torch.empty_like(matrix)
    for row in range(matrix.shape[0]):
        exps = torch.exp(matrix[row] - matrix[row].max())
        out[row] = exps / exps.sum()
    return out


def _slow_block(block, x, terms, bias=None, identity=False):
    """Per batch item and per head: q, k, v from ln_1 and in_proj, sum of softmaxes, then out_proj."""
    attn = block.attn
    heads = attn.num_heads
    width = x.shape[-1]
    head_dim = width // heads
    outputs = []
    for item in x:
        hidden = block.ln_1(item)
        w_q, w_k, w_v = attn.in_proj_weight.split(width)
        b_q, b_k, b_v = attn.in_proj_bias.split(width)
        q_all, k_all, v_all = hidden @ w_q.T + b_q, hidden @ w_k.T + b_k, hidden @ w_v.T + b_v
        mixed_heads = []
        for head in range(heads):
            cols = slice(head * head_dim, (head + 1) * head_dim)
            named = {"q": q_all[:, cols], "k": k_all[:, cols], "v": v_all[:, cols]}
            if identity:
                weights = torch.eye(item.shape[0])
            else:
                weights = torch.zeros(item.shape[0], item.shape[0])
                for term in terms:
                    logits = named[term[0]] @ named[term[1]].T / math.sqrt(head_dim)
                    if bias is not None:
                        logits = logits + bias
                    weights = weights + _softmax_rows(logits)
            mixed_heads.append(weights @ named["v"])
        outputs.append(attn.out_proj(torch.cat(mixed_heads, dim=1)))
    return torch.stack(outputs)


def _slow_gaussian_bias(grid, std):
    height, width = grid
    bias = torch.zeros(height * width + 1, height * width + 1)
    for i in range(height * width):
        for j in range(height * width):
            (ri, ci), (rj, cj) = divmod(i, width), divmod(j, width)
            bias[i + 1, j + 1] = math.exp(-((ri - rj) ** 2 + (ci - cj) ** 2) / (2 * std**2))
    return bias


EXPECTED_TERMS = {
    "segearth": ("qq", "kk", "vv"),
    "clearclip": ("qq",),
    "sclip": ("qq", "kk"),
    "naclip": ("kk",),
    "vanilla": ("qk",),
}


@torch.no_grad()
@pytest.mark.parametrize("name", sorted(EXPECTED_TERMS))
def test_modes_match_direct_formula(block_and_tokens, name):
    block, tokens = block_and_tokens
    bias = _slow_gaussian_bias(GRID, 1.0) if name == "naclip" else None
    expected = _slow_block(block, tokens, EXPECTED_TERMS[name], bias=bias)
    actual = modified_last_block(block, tokens, attention_mode(name), GRID)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_maskclip_is_out_proj_of_values(block_and_tokens):
    block, tokens = block_and_tokens
    expected = _slow_block(block, tokens, (), identity=True)
    torch.testing.assert_close(modified_last_block(block, tokens, attention_mode("maskclip"), GRID), expected)


@torch.no_grad()
def test_vanilla_equals_torch_multihead_attention(block_and_tokens):
    block, tokens = block_and_tokens
    hidden = block.ln_1(tokens)
    reference = block.attn(hidden, hidden, hidden, need_weights=False)[0]
    actual = modified_last_block(block, tokens, attention_mode("vanilla"), GRID)
    torch.testing.assert_close(actual, reference, atol=1e-5, rtol=1e-5)


def test_gaussian_bias_definition():
    bias = gaussian_neighbourhood_bias((3, 5), 1.0)
    torch.testing.assert_close(bias, _slow_gaussian_bias((3, 5), 1.0))
    assert bias[0].abs().sum() == 0 and bias[:, 0].abs().sum() == 0
    assert torch.allclose(bias[1:, 1:].diagonal(), torch.ones(15))


def test_mode_table_and_errors():
    assert set(ATTENTION_MODES) == {"segearth", "clearclip", "sclip", "maskclip", "naclip", "vanilla"}
    assert attention_mode("SegEarth") is ATTENTION_MODES["segearth"]
    assert ATTENTION_MODES["naclip"].neighbourhood_std == 1.0
    with pytest.raises(UserError, match="unknown attention mode"):
        attention_mode("gem")
