"""oneDNN linears and self-attention against the modules they replace: F.linear, nn.MultiheadAttention,
and whole tiny open_clip / segment-anything models before and after the swap. The profiler confirms the
oneDNN op actually ran where it should (and did not where it should not)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from engine.models.architectures import TINY_VIT_16, create_clip, tokenizer_for
from engine.models.sam_architectures import create_sam
from engine.runtime import onednn_linear
from engine.runtime.onednn_linear import (
    OneDnnLinear,
    OneDnnSelfAttention,
    onednn_linear_available,
    use_onednn_linears,
)

pytestmark = pytest.mark.skipif(not onednn_linear_available(), reason="no oneDNN linear in this torch")

ONEDNN_OP = "mkldnn::_linear_pointwise"
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Tiny models only (see conftest)."""


def run_counting_onednn(fn):
    """fn() and how many times it called the oneDNN linear op."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out = fn()
    return out, sum(event.count for event in prof.key_averages() if event.key == ONEDNN_OP)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- OneDnnLinear -------------------------------------------------------------------------------------


def _inputs(kind: str) -> torch.Tensor:
    g = seeded(1)
    if kind == "2d":
        return torch.randn(37, 24, generator=g)
    if kind == "3d":
        return torch.randn(3, 11, 24, generator=g)
    if kind == "4d":
        return torch.randn(2, 5, 3, 24, generator=g)
    if kind == "non-contiguous":
        return torch.randn(3, 24, 11, generator=g).transpose(1, 2)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["2d", "3d", "4d", "non-contiguous"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_f_linear_through_onednn(kind, bias):
    torch.manual_seed(0)
    original = nn.Linear(24, 40, bias=bias)
    swapped = OneDnnLinear(original)
    x = _inputs(kind)
    with torch.no_grad():
        got, calls = run_counting_onednn(lambda: swapped(x))
        expected = F.linear(x, original.weight, original.bias)
    assert calls == 1
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, **TOLERANCE)


def test_linear_shares_parameters_and_state_dict():
    original = nn.Linear(8, 4)
    swapped = OneDnnLinear(original)
    assert swapped.weight is original.weight and swapped.bias is original.bias
    assert swapped.state_dict().keys() == original.state_dict().keys()
    no_bias = OneDnnLinear(nn.Linear(8, 4, bias=False))
    assert list(no_bias.state_dict()) == ["weight"] and no_bias.bias is None


def test_linear_bfloat16_goes_through_f_linear_unchanged():
    torch.manual_seed(0)
    swapped = OneDnnLinear(nn.Linear(24, 40)).to(torch.bfloat16)
    x = _inputs("3d").to(torch.bfloat16)
    with torch.no_grad():
        got, calls = run_counting_onednn(lambda: swapped(x))
    assert calls == 0
    assert torch.equal(got, F.linear(x, swapped.weight, swapped.bias))


def test_linear_with_gradients_uses_f_linear_and_backpropagates():
    torch.manual_seed(0)
    original = nn.Linear(24, 40)
    reference = copy.deepcopy(original)
    swapped = OneDnnLinear(original)
    x = _inputs("3d")
    got, calls = run_counting_onednn(lambda: swapped(x))
    got.square().sum().backward()
    reference(x).square().sum().backward()
    assert calls == 0
    torch.testing.assert_close(swapped.weight.grad, reference.weight.grad)
    torch.testing.assert_close(swapped.bias.grad, reference.bias.grad)


def test_linear_under_autocast_follows_autocast():
    torch.manual_seed(0)
    original = nn.Linear(24, 40)
    swapped = OneDnnLinear(original)
    x = _inputs("2d")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, calls = run_counting_onednn(lambda: swapped(x))
        expected = original(x)
    assert calls == 0 and got.dtype == torch.bfloat16
    assert torch.equal(got, expected)


# --- OneDnnSelfAttention ------------------------------------------------------------------------------

BATCH, TOKENS, WIDTH, HEADS = 2, 9, 32, 4


def _mask(kind: str) -> torch.Tensor | None:
    """MHA-style masks; every token may attend to itself so no softmax row is empty."""
    g = seeded(2)
    shape = (TOKENS, TOKENS) if kind.endswith("2d") else (BATCH * HEADS, TOKENS, TOKENS)
    blocked = (torch.rand(shape, generator=g) < 0.4) & ~torch.eye(TOKENS, dtype=torch.bool)
    if kind == "none":
        return None
    if kind.startswith("bool"):
        return blocked
    bias = torch.randn(shape, generator=g)
    return bias.masked_fill(blocked, float("-inf"))


def _mha(batch_first: bool, bias: bool = True) -> nn.MultiheadAttention:
    torch.manual_seed(3)
    mha = nn.MultiheadAttention(WIDTH, HEADS, bias=bias, batch_first=batch_first).eval()
    with torch.no_grad():  # MHA starts with zero biases, which would hide a bias mistake
        for parameter in mha.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return mha


def _tokens(batch_first: bool) -> torch.Tensor:
    x = torch.randn(BATCH, TOKENS, WIDTH, generator=seeded(4))
    return x if batch_first else x.transpose(0, 1).contiguous()


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask_kind", ["none", "float-2d", "float-3d", "bool-2d", "bool-3d"])
def test_self_attention_matches_multihead_attention(batch_first, mask_kind):
    mha = _mha(batch_first)
    attention = OneDnnSelfAttention(mha)
    x, mask = _tokens(batch_first), _mask(mask_kind)
    with torch.no_grad():
        expected, _ = mha(x, x, x, need_weights=False, attn_mask=mask)
        (got, weights), calls = run_counting_onednn(
            lambda: attention(x, x, x, need_weights=False, attn_mask=mask)
        )
    assert calls == 2  # packed q/k/v projection and out_proj
    assert weights is None
    torch.testing.assert_close(got, expected, **TOLERANCE)


def test_self_attention_without_bias():
    mha = _mha(batch_first=True, bias=False)
    attention = OneDnnSelfAttention(mha)
    x = _tokens(True)
    with torch.no_grad():
        torch.testing.assert_close(
            attention(x, x, x, need_weights=False)[0], mha(x, x, x, need_weights=False)[0], **TOLERANCE
        )


def test_self_attention_exposes_multihead_attention_attributes():
    mha = _mha(batch_first=False)
    attention = OneDnnSelfAttention(mha)
    assert attention.in_proj_weight is mha.in_proj_weight and attention.in_proj_bias is mha.in_proj_bias
    assert isinstance(attention.out_proj, OneDnnLinear) and attention.out_proj.weight is mha.out_proj.weight
    assert (attention.num_heads, attention.embed_dim, attention.head_dim) == (HEADS, WIDTH, WIDTH // HEADS)
    assert attention.batch_first is False
    assert attention.state_dict().keys() == mha.state_dict().keys()


def _fallback_cases(x: torch.Tensor):
    other = torch.randn(x.shape, generator=seeded(5))
    padding = torch.zeros(BATCH, TOKENS, dtype=torch.bool)
    padding[0, -3:] = True
    return {
        "weights": ((x, x, x), {"need_weights": True}),
        "per-head weights": ((x, x, x), {"need_weights": True, "average_attn_weights": False}),
        "key padding": ((x, x, x), {"need_weights": False, "key_padding_mask": padding}),
        "cross-attention": ((x, other, other), {"need_weights": False}),
        "other values": ((x, x, other), {"need_weights": False}),
    }


@pytest.mark.parametrize(
    "case", ["weights", "per-head weights", "key padding", "cross-attention", "other values"]
)
def test_self_attention_falls_back_to_the_original(case):
    mha = _mha(batch_first=True)
    attention = OneDnnSelfAttention(mha)
    args, kwargs = _fallback_cases(_tokens(True))[case]
    with torch.no_grad():
        expected = mha(*args, **kwargs)
        got, calls = run_counting_onednn(lambda: attention(*args, **kwargs))
    assert calls == 0
    torch.testing.assert_close(got[0], expected[0])
    if expected[1] is not None:
        torch.testing.assert_close(got[1], expected[1])


def test_self_attention_with_gradients_backpropagates_like_the_original():
    mha = _mha(batch_first=True)
    reference = copy.deepcopy(mha)
    attention = OneDnnSelfAttention(mha)
    x = _tokens(True)
    got, calls = run_counting_onednn(lambda: attention(x, x, x, need_weights=False)[0])
    got.sum().backward()
    reference(x, x, x, need_weights=False)[0].sum().backward()
    assert calls == 0
    torch.testing.assert_close(attention.in_proj_weight.grad, reference.in_proj_weight.grad)
    torch.testing.assert_close(attention.out_proj.weight.grad, reference.out_proj.weight.grad)


# --- whole models -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip_pair():
    """(untouched, swapped) copies of the same tiny open_clip model, and the swap count."""
    original = create_clip(TINY_VIT_16, seed=7)
    swapped = copy.deepcopy(original)
    return original, swapped, use_onednn_linears(swapped)


def test_clip_swap_keeps_image_and_text_features(tiny_clip_pair):
    original, swapped, count = tiny_clip_pair
    # Vision: 3 blocks × (attention + 2 MLP linears); text: 2 blocks × 3. No bare nn.Linear elsewhere.
    assert count == 3 * 3 + 2 * 3
    assert all(isinstance(block.attn, OneDnnSelfAttention) for block in swapped.visual.transformer.resblocks)
    images = torch.randn(2, 3, 224, 224, generator=seeded(8))
    tokens = tokenizer_for(TINY_VIT_16)(["a river", "farmland next to a road"])
    with torch.no_grad():
        (image_features, text_features), calls = run_counting_onednn(
            lambda: (swapped.encode_image(images), swapped.encode_text(tokens))
        )
        torch.testing.assert_close(image_features, original.encode_image(images), **TOLERANCE)
        # The text tower passes a causal float (N, N) mask.
        torch.testing.assert_close(text_features, original.encode_text(tokens), **TOLERANCE)
    assert calls == 4 * (3 + 2)  # qkv, out_proj and the MLP's two linears in every block


def test_clip_swap_keeps_state_dict_and_is_idempotent(tiny_clip_pair):
    original, swapped, _ = tiny_clip_pair
    assert list(swapped.state_dict()) == list(original.state_dict())
    reloaded = copy.deepcopy(swapped)
    reloaded.load_state_dict(original.state_dict())
    assert use_onednn_linears(swapped) == 0


def test_clip_swap_keeps_working_in_bfloat16(tiny_clip_pair):
    original, swapped, _ = tiny_clip_pair
    original_bf16 = copy.deepcopy(original).to(torch.bfloat16)
    swapped_bf16 = copy.deepcopy(swapped).to(torch.bfloat16)
    images = torch.randn(1, 3, 224, 224, generator=seeded(9)).to(torch.bfloat16)
    with torch.no_grad():
        got, calls = run_counting_onednn(lambda: swapped_bf16.encode_image(images))
        assert calls == 0
        assert torch.equal(got, original_bf16.encode_image(images))


def test_nothing_swapped_without_onednn(monkeypatch):
    monkeypatch.setattr(onednn_linear, "onednn_linear_available", lambda: False)
    model = nn.Sequential(nn.Linear(4, 4), nn.MultiheadAttention(4, 2))
    assert use_onednn_linears(model) == 0
    assert type(model[0]) is nn.Linear and type(model[1]) is nn.MultiheadAttention


def test_shared_linear_stays_shared_and_cross_attention_is_kept():
    shared = nn.Linear(4, 4)
    cross = nn.MultiheadAttention(4, 2, kdim=3, vdim=3)
    model = nn.ModuleDict({"a": shared, "b": nn.Sequential(shared), "cross": cross})
    assert use_onednn_linears(model) == 1
    assert model["a"] is model["b"][0] and isinstance(model["a"], OneDnnLinear)
    assert model["cross"] is cross


def test_sam_swap_keeps_encoder_and_decoder_outputs():
    sam = create_sam("tiny", seed=1)
    swapped = copy.deepcopy(sam)
    count = use_onednn_linears(swapped)
    assert count > 0
    assert list(swapped.state_dict()) == list(sam.state_dict())
    image = torch.randn(1, 3, 1024, 1024, generator=seeded(10))
    points = (torch.tensor([[[300.0, 420.0], [700.0, 200.0]]]), torch.tensor([[1, 0]]))

    def predict(model):
        embedding = model.image_encoder(image)
        sparse, dense = model.prompt_encoder(points=points, boxes=None, masks=None)
        masks, iou = model.mask_decoder(
            image_embeddings=embedding,
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        return embedding, masks, iou

    with torch.no_grad():
        expected = predict(sam)
        got, calls = run_counting_onednn(lambda: predict(swapped))
    assert calls > 0
    for got_part, expected_part in zip(got, expected):
        torch.testing.assert_close(got_part, expected_part, rtol=1e-4, atol=1e-4)
