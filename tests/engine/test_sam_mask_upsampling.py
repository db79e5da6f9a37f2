"""engine.sam.mask_upsampling: one separable map gives segment-anything's two mask resizes."""

import math

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from engine.models.sam_architectures import create_sam
from engine.sam import mask_upsampling
from engine.sam.mask_upsampling import (
    install_fused_mask_upsampling,
    resize_matrix,
    uninstall_fused_mask_upsampling,
    upsample_masks,
)


def _half_pixel_bilinear(in_len: int, out_len: int) -> np.ndarray:
    """The textbook half-pixel-centre linear resize, written out: output o samples input position
    (o + ½)·in/out − ½, clamped at the first pixel, between its two neighbours."""
    matrix = np.zeros((out_len, in_len))
    for o in range(out_len):
        position = max((o + 0.5) * in_len / out_len - 0.5, 0.0)
        left = min(math.floor(position), in_len - 1)
        right = min(left + 1, in_len - 1)
        weight = position - left
        matrix[o, left] += 1 - weight
        matrix[o, right] += weight
    return matrix


@pytest.mark.parametrize(("in_len", "out_len"), [(256, 1024), (1024, 896), (700, 451), (5, 3)])
def test_resize_matrix_is_the_half_pixel_linear_resize(in_len, out_len):
    got = resize_matrix(in_len, out_len).numpy()
    # float32 source positions: about 1e-4 off the exact ones at 1000-px sizes (see resize_matrix).
    np.testing.assert_allclose(got, _half_pixel_bilinear(in_len, out_len), atol=2e-4)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("input_size", "original_size"),
    [
        ((1024, 1024), (896, 896)),  # a full SAM window, shrunk
        ((1024, 768), (480, 360)),  # padding cut off on the right, then shrunk
        ((683, 1024), (1500, 2250)),  # padding cut off at the bottom, then enlarged
        ((64, 40), (17, 11)),
    ],
)
@pytest.mark.parametrize("rows_per_block", [5, 64])
def test_fused_map_equals_segment_anythings_resizes(monkeypatch, input_size, original_size, rows_per_block):
    monkeypatch.setattr(mask_upsampling, "ROWS_PER_BLOCK", rows_per_block)
    sam = create_sam("tiny", seed=0)
    masks = torch.randn(3, 2, 256, 256, generator=torch.Generator().manual_seed(1)) * 8
    expected = Sam.postprocess_masks(sam, masks, input_size, original_size)
    got = upsample_masks(masks, sam.image_encoder.img_size, input_size, original_size)
    assert got.shape == expected.shape == (3, 2, *original_size)
    scale = expected.abs().max().item()
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6 * scale)
    decided = expected.abs() > 2e-6 * scale
    assert torch.equal((got > 0)[decided], (expected > 0)[decided])


def test_install_is_idempotent_keeps_the_state_dict_and_predictions(one_thread):
    sam = create_sam("tiny", seed=2)
    keys = list(sam.state_dict())
    predictor = SamPredictor(sam)
    image = np.random.default_rng(0).integers(0, 256, (90, 140, 3), dtype=np.uint8)
    predictor.set_image(image)
    points = torch.tensor([[[20.0, 30.0]], [[100.0, 50.0]]])
    coords = predictor.transform.apply_coords_torch(points, (90, 140))
    labels = torch.ones(2, 1, dtype=torch.int)
    expected = predictor.predict_torch(coords, labels, multimask_output=True, return_logits=True)[0]
    install_fused_mask_upsampling(sam)
    install_fused_mask_upsampling(sam)
    try:
        assert list(sam.state_dict()) == keys
        got = predictor.predict_torch(coords, labels, multimask_output=True, return_logits=True)[0]
    finally:
        uninstall_fused_mask_upsampling(sam)
    assert sam.postprocess_masks.__func__ is Sam.postprocess_masks
    assert got.shape == (2, 3, 90, 140)
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6 * expected.abs().max().item())


def test_no_masks_give_an_empty_batch():
    """Every mask of a batch can fail the IoU filter: nothing is left to resize."""
    got = upsample_masks(torch.zeros(0, 1, 256, 256), 1024, (1024, 1024), (896, 896))
    assert got.shape == (0, 1, 896, 896)
