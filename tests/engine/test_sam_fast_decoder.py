"""FastMaskDecoder against segment-anything's own MaskDecoder (random-weight full-size decoder)."""

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MaskDecoder
from torch import nn

from engine.models.sam_architectures import create_sam
from engine.runtime.onednn_linear import use_onednn_linears
from engine.sam import fast_decoder
from engine.sam.fast_decoder import (
    FastMaskDecoder,
    _image_product,
    install_fast_decoder,
    uninstall_fast_decoder,
)


def _random_sam(seed):
    """A random-weight SAM whose norms are not the identity (fresh ones are), so they get tested too."""
    sam = create_sam("tiny", seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in sam.mask_decoder.modules():
            if isinstance(module, (nn.LayerNorm, LayerNorm2d)):
                module.weight.add_(0.2 * torch.randn(module.weight.shape, generator=generator))
                module.bias.add_(0.1 * torch.randn(module.bias.shape, generator=generator))
    return sam


@pytest.fixture(scope="module")
def sam(one_thread):
    return _random_sam(5)


def _inputs(sam, batch, seed, boxes=False, masks=None):
    """A random image embedding and prompt-encoder outputs for ``batch`` positive points (+ boxes)."""
    generator = torch.Generator().manual_seed(seed)
    embedding = torch.randn(1, 256, 64, 64, generator=generator)
    points = torch.rand(batch, 1, 2, generator=generator) * 1024
    box = torch.rand(batch, 4, generator=generator).sort(dim=1).values * 1024 if boxes else None
    with torch.inference_mode():
        sparse, dense = sam.prompt_encoder(
            points=(points, torch.ones(batch, 1, dtype=torch.int)), boxes=box, masks=masks
        )
    return embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense


def _forbid_upstream(monkeypatch, decoder: FastMaskDecoder):
    """Make any use of the upstream forward fail, so a passing comparison proves the fast path ran."""

    def fail(*args, **kwargs):
        raise AssertionError("fell back to the upstream decoder")

    monkeypatch.setattr(decoder.upstream, "forward", fail)


def _count_upstream(monkeypatch, decoder: FastMaskDecoder) -> list:
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return MaskDecoder.forward(decoder.upstream, *args, **kwargs)

    monkeypatch.setattr(decoder.upstream, "forward", counted)
    return calls


def _assert_close(expected, actual):
    (masks, iou), (fast_masks, fast_iou) = expected, actual
    assert fast_masks.shape == masks.shape and fast_iou.shape == iou.shape
    tolerance = 1e-4 * masks.abs().max().item()
    torch.testing.assert_close(fast_masks, masks, rtol=0, atol=tolerance)
    torch.testing.assert_close(fast_iou, iou, rtol=0, atol=1e-4 * iou.abs().max().item())
    decided = masks.abs() > tolerance
    assert torch.equal((fast_masks > 0)[decided], (masks > 0)[decided])


@pytest.fixture(params=["onednn", "torch"])
def product_route(request, monkeypatch):
    """Runs a test through the CPU float32 oneDNN products and again through the portable ones."""
    if request.param == "torch":
        monkeypatch.setattr(fast_decoder, "onednn_route_applies", lambda *args: False)
    return request.param


@pytest.mark.parametrize(
    ("batch", "boxes", "multimask"),
    [(1, False, True), (1, False, False), (3, False, False), (9, False, True), (2, True, True)],
)  # 9 points: more than one chunk
def test_fast_path_matches_upstream(sam, monkeypatch, product_route, batch, boxes, multimask):
    embedding, pe, sparse, dense = _inputs(sam, batch, seed=batch, boxes=boxes)
    decoder = FastMaskDecoder(sam.mask_decoder)
    with torch.inference_mode():
        expected = sam.mask_decoder(embedding, pe, sparse, dense, multimask)
        _forbid_upstream(monkeypatch, decoder)
        actual = decoder(embedding, pe, sparse, dense, multimask)
    _assert_close(expected, actual)
    assert actual[0].shape[:2] == (batch, 3 if multimask else 1)


def test_identical_dense_prompts_in_memory_take_the_fast_path(sam, monkeypatch):
    embedding, pe, sparse, dense = _inputs(sam, 3, seed=7)
    dense = dense.contiguous()  # no stride-0 hint: found identical by comparison
    decoder = FastMaskDecoder(sam.mask_decoder)
    with torch.inference_mode():
        expected = sam.mask_decoder(embedding, pe, sparse, dense, True)
        _forbid_upstream(monkeypatch, decoder)
        _assert_close(expected, decoder(embedding, pe, sparse, dense, True))


def _assert_upstream_ran_once_and_equal(sam, monkeypatch, embedding, pe, sparse, dense, multimask):
    decoder = FastMaskDecoder(sam.mask_decoder)
    with torch.inference_mode():
        expected = sam.mask_decoder(embedding, pe, sparse, dense, multimask)
        calls = _count_upstream(monkeypatch, decoder)
        actual = decoder(embedding, pe, sparse, dense, multimask)
    assert calls == [1]
    assert torch.equal(actual[0], expected[0]) and torch.equal(actual[1], expected[1])


def test_mask_prompts_fall_back_to_upstream_exactly(sam, monkeypatch):
    mask_prompts = torch.randn(3, 1, 256, 256, generator=torch.Generator().manual_seed(0))
    embedding, pe, sparse, dense = _inputs(sam, 3, seed=8, masks=mask_prompts)
    _assert_upstream_ran_once_and_equal(sam, monkeypatch, embedding, pe, sparse, dense, True)


def test_two_image_embeddings_fall_back_to_upstream_exactly(sam, monkeypatch):
    embedding, pe, sparse, dense = _inputs(sam, 1, seed=9)
    embeddings = torch.cat([embedding, -embedding])
    _assert_upstream_ran_once_and_equal(sam, monkeypatch, embeddings, pe, sparse, dense, False)


class _CountingProjection(nn.Module):
    """Stands in for a faster linear kernel: same result, but not an ``nn.Linear``."""

    calls = 0

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x):
        _CountingProjection.calls += 1
        return self.linear(x)


def test_swapped_projection_modules_are_called_on_the_fast_path(monkeypatch, product_route, one_thread):
    sam = _random_sam(6)
    for attention in sam.mask_decoder.transformer.modules():
        if hasattr(attention, "q_proj"):
            for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
                setattr(attention, name, _CountingProjection(getattr(attention, name)))
    embedding, pe, sparse, dense = _inputs(sam, 3, seed=10)
    decoder = FastMaskDecoder(sam.mask_decoder)
    with torch.inference_mode():
        expected = sam.mask_decoder(embedding, pe, sparse, dense, True)
        _forbid_upstream(monkeypatch, decoder)
        _CountingProjection.calls = 0
        actual = decoder(embedding, pe, sparse, dense, True)
    assert _CountingProjection.calls > 0
    _assert_close(expected, actual)


def test_install_shares_parameters_and_predictor_results_are_unchanged(sam, monkeypatch):
    predictor = SamPredictor(sam)
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    predictor.set_image(image)
    points = torch.tensor([[[30.0, 40.0]], [[100.0, 60.0]], [[150.0, 110.0]]])
    coords = predictor.transform.apply_coords_torch(points, image.shape[:2])
    labels = torch.ones(3, 1, dtype=torch.int)
    original = sam.mask_decoder
    keys = list(sam.state_dict())
    expected = predictor.predict_torch(coords, labels, multimask_output=True, return_logits=True)

    install_fast_decoder(sam)
    try:
        install_fast_decoder(sam)
        fast = sam.mask_decoder
        assert isinstance(fast, FastMaskDecoder) and fast.upstream is original
        assert list(sam.state_dict()) == keys
        assert {id(p) for p in fast.parameters()} == {id(p) for p in original.parameters()}
        _forbid_upstream(monkeypatch, fast)
        actual = predictor.predict_torch(coords, labels, multimask_output=True, return_logits=True)
    finally:
        uninstall_fast_decoder(sam)
    assert sam.mask_decoder is original
    for got, want in zip(actual, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4 * want.abs().max().item())


def test_onednn_linears_keep_the_folded_products(monkeypatch, one_thread):
    """The engine swaps every nn.Linear for a OneDnnLinear before installing the fast decoder: the
    projections must still be folded into the few token rows, with the image-side products per point
    through oneDNN, and give upstream's outputs."""
    sam = _random_sam(7)
    embedding, pe, sparse, dense = _inputs(sam, 3, seed=11)
    with torch.inference_mode():
        expected = sam.mask_decoder(embedding, pe, sparse, dense, True)
    use_onednn_linears(sam)
    decoder = FastMaskDecoder(sam.mask_decoder)
    products, residual_products = [], []
    plus = fast_decoder._image_product_plus
    monkeypatch.setattr(fast_decoder, "_image_product", lambda *a: products.append(a) or _image_product(*a))
    monkeypatch.setattr(
        fast_decoder, "_image_product_plus", lambda *a: residual_products.append(a) or plus(*a)
    )
    monkeypatch.setattr(fast_decoder, "onednn_residual_linear_available", lambda: True)
    with torch.inference_mode():
        _forbid_upstream(monkeypatch, decoder)
        actual = decoder(embedding, pe, sparse, dense, True)
    _assert_close(expected, actual)
    # One product for the first block's shared image-to-token scores (all points' 8 heads x 7 tokens),
    # then per point: two per later token-to-image attention (folded: unfolded ones take the attention
    # kernel instead), one for the scores of each later image-to-token attention; and the output of every
    # image-to-token attention with its residual added in the product's epilogue.
    later_blocks = len(sam.mask_decoder.transformer.layers) - 1
    assert products[0][0].shape[0] == 3 * 8 * 7
    assert len(products) == 1 + 3 * (2 * later_blocks + 2 + later_blocks)
    assert len(residual_products) == 3 * (1 + later_blocks)
    # The final attention (the last two products per point) runs only for the IoU token and the 3 mask
    # tokens that multimask output reads, 8 heads each: not for the fourth, single-mask token.
    assert [args[0].shape[0] for args in products[-6::2]] == [4 * 8] * 3


def test_residual_epilogue_matches_a_separate_add(monkeypatch, one_thread):
    """The image-to-token output with its residual added by oneDNN's epilogue equals the product plus a
    separate add (the route taken where this PyTorch lacks the binary post-op)."""
    sam = _random_sam(5)
    embedding, pe, sparse, dense = _inputs(sam, 4, seed=3)
    use_onednn_linears(sam)
    decoder = FastMaskDecoder(sam.mask_decoder)
    outputs = {}
    for fused in (True, False):
        monkeypatch.setattr(fast_decoder, "onednn_residual_linear_available", lambda fused=fused: fused)
        with torch.inference_mode():
            outputs[fused] = decoder(embedding, pe, sparse, dense, True)
    _assert_close(outputs[False], outputs[True])
