"""Dense CLIP forward: position-embedding resizing, padding, and the plumbing around the last block."""

from __future__ import annotations

import pytest
import torch

from engine.clip.attention import attention_mode, modified_last_block
from engine.clip.dense import DenseClip, patch_padding, remove_padding
from engine.clip.positional import interpolate_positional_embedding
from engine.models.architectures import TINY_VIT_14, TINY_VIT_16, create_clip


@pytest.fixture(scope="module")
def model():
    return create_clip(TINY_VIT_16, seed=5)


def test_positional_embedding_identity_at_native_grid(model):
    embedding = model.visual.positional_embedding.detach()
    assert interpolate_positional_embedding(embedding, (14, 14)) is embedding


def test_positional_embedding_non_square_keeps_class_token(model):
    embedding = model.visual.positional_embedding.detach()
    resized = interpolate_positional_embedding(embedding, (9, 5))
    assert resized.shape == (1 + 45, 64)
    torch.testing.assert_close(resized[0], embedding[0])
    # Bicubic weights sum to one: a constant grid stays constant.
    constant = torch.full((197, 3), 2.5)
    torch.testing.assert_close(interpolate_positional_embedding(constant, (20, 7)), torch.full((141, 3), 2.5))


def _cubic_weight(distance, a=-0.75):
    """Keys' cubic convolution kernel with PyTorch's a = -0.75."""
    d = abs(distance)
    if d <= 1:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1
    if d < 2:
        return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return 0.0


def test_positional_embedding_reference_sampling():
    """Output index o samples the source at (o + 0.5) · n / (g + 0.1) - 0.5 (the reference's scale factor)."""
    side, grid = 14, 23
    values = torch.randn(side, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    embedding = torch.cat([torch.zeros(1, 1), values.repeat_interleave(side)[:, None]]).to(torch.float64)
    resized = interpolate_positional_embedding(embedding, (grid, 6))[1:, 0].view(grid, 6)
    for out_row in range(3, grid - 3):  # interior rows: no border clamping involved
        position = (out_row + 0.5) * side / (grid + 0.1) - 0.5
        base = int(position // 1)
        expected = sum(values[base + t].item() * _cubic_weight(position - (base + t)) for t in (-1, 0, 1, 2))
        assert resized[out_row, 2].item() == pytest.approx(expected, abs=1e-5)  # resized in float32


def test_patch_padding_matches_reference_split():
    assert patch_padding(224, 224, 16) == (0, 0, 0, 0)
    assert patch_padding(100, 130, 16) == (7, 7, 6, 6)  # 130 -> 144: 14 = 7 + 7; 100 -> 112: 12 = 6 + 6
    assert patch_padding(17, 5, 16) == (5, 6, 7, 8)
    tensor = torch.arange(2 * 20 * 30).view(2, 20, 30)
    torch.testing.assert_close(remove_padding(tensor, (1, 2, 3, 4)), tensor[:, 3:16, 1:28])


def _slow_dense(visual, images, mode_name):
    """Native-size path through open_clip's own embedding and blocks, then the modified last block."""
    x = visual._embeds(images)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    grid = (images.shape[-2] // 16, images.shape[-1] // 16)
    x = modified_last_block(visual.transformer.resblocks[-1], x, attention_mode(mode_name), grid)
    x = visual.ln_post(x) @ visual.proj
    return x[:, 0], x[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, *grid)


@torch.no_grad()
@pytest.mark.parametrize("mode_name", ["segearth", "vanilla"])
def test_dense_matches_open_clip_plumbing_at_native_size(model, mode_name):
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    features = DenseClip(model.visual, mode_name)(images)
    cls, patches = _slow_dense(model.visual, images, mode_name)
    assert features.patches.shape == (2, 32, 14, 14) and features.cls.shape == (2, 32)
    torch.testing.assert_close(features.patches, patches, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(features.cls, cls, atol=1e-5, rtol=1e-5)
    assert features.padding == (0, 0, 0, 0)


@torch.no_grad()
def test_dense_pads_any_size_and_leaves_the_model_untouched(model):
    images = torch.randn(1, 3, 100, 130)
    before = model.visual(torch.zeros(1, 3, 224, 224))
    features = DenseClip(model.visual)(images)
    assert features.patches.shape == (1, 32, 7, 9)
    assert features.padded.shape == (1, 3, 112, 144)
    torch.testing.assert_close(remove_padding(features.padded, features.padding), images)
    assert torch.isfinite(features.patches).all()
    torch.testing.assert_close(model.visual(torch.zeros(1, 3, 224, 224)), before)


@torch.no_grad()
def test_dense_patch_14_backbone():
    visual = create_clip(TINY_VIT_14, seed=2).visual
    features = DenseClip(visual, "naclip")(torch.randn(1, 3, 70, 50))
    assert features.patches.shape == (1, 32, 5, 4) and features.padding == (3, 3, 0, 0)
