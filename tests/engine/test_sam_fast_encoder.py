"""engine.sam.fast_encoder: blockwise relative-position attention equals segment-anything's own."""

from __future__ import annotations

import copy

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

from engine.models.sam_architectures import create_sam
from engine.sam import fast_encoder
from engine.sam.fast_encoder import RelPosAttention, install_fast_encoder


def _randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Relative-position tables start at zero, which would hide a wrong bias: fill them randomly."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return module


@pytest.mark.parametrize("rel_pos", [True, False])
@pytest.mark.parametrize("rows_per_block", [7, 10_000])  # several query blocks (one ragged), or one
@pytest.mark.parametrize("onednn_min_tokens", [1, 10**9])  # the CPU oneDNN path, or fused attention
def test_blockwise_attention_equals_upstream(monkeypatch, rel_pos, rows_per_block, onednn_min_tokens):
    grid = (6, 5)
    upstream = _randomised(Attention(16, num_heads=4, use_rel_pos=rel_pos, input_size=grid), seed=1).eval()
    monkeypatch.setattr(fast_encoder, "BIAS_VALUES_PER_BLOCK", rows_per_block * 2 * 4 * 30)
    monkeypatch.setattr(fast_encoder, "ONEDNN_QUERY_ROWS", rows_per_block)
    monkeypatch.setattr(fast_encoder, "ONEDNN_MIN_TOKENS", onednn_min_tokens)
    x = torch.randn(2, *grid, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = upstream(x)
        got = RelPosAttention(upstream)(x)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    assert got.shape == expected.shape


def test_installed_encoder_gives_the_same_embedding_and_keeps_its_state_dict():
    sam = _randomised(create_sam("tiny", seed=3), seed=4)
    fast = copy.deepcopy(sam)
    assert install_fast_encoder(fast) == len(sam.image_encoder.blocks) + 1  # and the patch embedding
    assert install_fast_encoder(fast) == 0  # idempotent
    assert list(fast.state_dict()) == list(sam.state_dict())
    image = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = sam.image_encoder(image)
        got = fast.image_encoder(image)
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-4 * scale


def _norm_input_strides(sam, image) -> list[tuple[int, ...]]:
    """Strides of the tensor each image-encoder block's first LayerNorm reads."""
    seen = []
    hooks = [
        b.norm1.register_forward_pre_hook(lambda m, a: seen.append(a[0].stride()))
        for b in sam.image_encoder.blocks
    ]
    with torch.no_grad():
        sam.image_encoder(image)
    for hook in hooks:
        hook.remove()
    return seen


def test_installed_encoder_keeps_the_residual_stream_contiguous():
    """Upstream's patch embedding hands the blocks a permuted view, so every LayerNorm reads a strided
    tensor (several times slower); installed, every block reads a contiguous one."""
    sam = create_sam("tiny", seed=3)
    image = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(5))
    width = sam.image_encoder.patch_embed.proj.out_channels
    contiguous = torch.empty(1, 64, 64, width).stride()  # 1024² / 16² patches
    assert any(stride != contiguous for stride in _norm_input_strides(sam, image))
    install_fast_encoder(sam)
    assert _norm_input_strides(sam, image) == [contiguous] * len(sam.image_encoder.blocks)


def test_onednn_attention_matches_an_explicit_softmax_with_the_bias_added():
    """Independent of segment-anything: scores, bias, softmax and weighted sum written out per query."""
    generator = torch.Generator().manual_seed(6)
    batch, heads, height, width, channels = 2, 3, 4, 5, 8
    tokens = height * width
    q, k, v = (torch.randn(batch, heads, tokens, channels, generator=generator) for _ in range(3))
    rel_h = torch.randn(batch, heads, tokens, height, 1, generator=generator)
    rel_w = torch.randn(batch, heads, tokens, 1, width, generator=generator)
    got = fast_encoder.onednn_relpos_attention(q, k, v, rel_h, rel_w, scale=0.3)
    expected = torch.empty(batch, tokens, heads, channels)
    for b in range(batch):
        for h in range(heads):
            for i in range(tokens):
                bias = torch.tensor(
                    [rel_h[b, h, i, j // width, 0] + rel_w[b, h, i, 0, j % width] for j in range(tokens)]
                )
                weights = torch.exp(q[b, h, i] @ k[b, h].T * 0.3 + bias)
                expected[b, i, h] = (weights / weights.sum()) @ v[b, h]
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
