"""ReSeg-CLIP attention: schedules, majority ids, masks, and masked blocks vs. slow obvious versions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import UserError
from engine.methods.reseg.attention_masks import additive_bias, allowed_from_patch_ids, self_only_allowed
from engine.methods.reseg.id_maps import OUTSIDE_ID, crop_id_maps, patch_majority_ids
from engine.methods.reseg.masked_blocks import embed_patches, masked_forward, num_heads, run_blocks
from engine.methods.reseg.schedule import default_schedule, describe_schedule, parse_schedule, sam_sets_used
from engine.models.architectures import TINY_VIT_14, TINY_VIT_16, create_clip
from engine.sam.id_map import paint_id_map


@pytest.fixture(scope="module")
def visual():
    return create_clip(TINY_VIT_16, seed=3).visual.float().eval()


# -- schedules -------------------------------------------------------------------------------------------


def test_default_schedule_reproduces_reference_for_24_blocks():
    assert describe_schedule(default_schedule(24)) == "18*full,sam1,sam2,sam3,sam4,2*self"


def test_default_schedule_is_proportional_for_12_blocks():
    schedule = default_schedule(12)
    assert describe_schedule(schedule) == "9*full,sam1,sam4,self"
    assert sam_sets_used(schedule) == [0, 3]


def test_user_schedule_aligns_to_last_blocks_and_round_trips():
    schedule = parse_schedule("sam2, 2*self", depth=6, n_sam_sets=4)
    assert describe_schedule(schedule) == "3*full,sam2,2*self"
    assert parse_schedule(describe_schedule(schedule), 6, 4) == schedule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("13*full", "names 13 blocks but the model's vision tower has only 12"),
        ("sam5", "only sets 1..4 exist"),
        ("half", "not understood"),
        (" , ", "empty"),
    ],
)
def test_bad_schedules_are_user_errors(text, message):
    with pytest.raises(UserError, match=message):
        parse_schedule(text, depth=12, n_sam_sets=4)


# -- id maps ---------------------------------------------------------------------------------------------


def test_later_masks_overwrite_and_uncovered_is_zero():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3, :2] = True
    ids = paint_id_map([a, b], (4, 4))
    expected = np.array([[1, 1, 1, 1], [2, 2, 1, 1], [2, 2, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(ids, expected)


@pytest.mark.parametrize(("patch", "high"), [(4, 3), (16, 3), (16, 200), (14, 40)])
def test_patch_majority_matches_a_loop_with_np_unique(patch, high):
    rng = np.random.default_rng(patch + high)
    # Few distinct ids so ties happen; ties must go to the smallest id, like np.unique + argmax.
    ids = rng.integers(-1, high, size=(3, 3 * patch, 4 * patch)).astype(np.int32)
    fast = patch_majority_ids(torch.from_numpy(ids), patch).numpy()
    for b in range(ids.shape[0]):
        for i in range(ids.shape[1] // patch):
            for j in range(ids.shape[2] // patch):
                block = ids[b, i * patch : (i + 1) * patch, j * patch : (j + 1) * patch]
                values, counts = np.unique(block, return_counts=True)
                assert fast[b, i, j] == values[np.argmax(counts)]


def test_crop_id_maps_slices_and_marks_outside():
    window = np.arange(2 * 6 * 7, dtype=np.int32).reshape(2, 6, 7)
    crops = crop_id_maps(window, [(0, 0), (4, 5)], (3, 3))
    np.testing.assert_array_equal(crops[0], window[:, :3, :3])
    np.testing.assert_array_equal(crops[1, :, :2, :2], window[:, 4:6, 5:7])
    assert (crops[1, :, 2, :] == OUTSIDE_ID).all() and (crops[1, :, :, 2] == OUTSIDE_ID).all()


# -- attention masks -------------------------------------------------------------------------------------


def test_allowed_matrix_follows_the_rule():
    ids = torch.tensor([[5, 5, 2, 0]])
    allowed = allowed_from_patch_ids(ids)[0]
    for i in range(5):
        for j in range(5):
            if i == 0 or j == 0:
                expected = i == j == 0  # [CLS] only to itself, nobody to [CLS]
            else:
                expected = bool(ids[0, i - 1] == ids[0, j - 1])
            assert bool(allowed[i, j]) == expected


def test_attention_each_patch_receives_is_zero_exactly_outside_its_segment(visual):
    torch.manual_seed(0)
    grid = 224 // 16
    ids = torch.zeros(grid, grid, dtype=torch.long)
    ids[:7, :5] = 1
    ids[7:, 3:11] = 2
    ids[2:4, 10:] = 3
    ids = ids.flatten()[None]
    pixels = torch.randn(1, 3, 224, 224)
    tokens = embed_patches(visual, pixels)
    block = visual.transformer.resblocks[0]
    heads = num_heads(visual)
    bias = additive_bias(allowed_from_patch_ids(ids), heads, tokens.dtype)
    x = block.ln_1(tokens)
    _, weights = block.attn(x, x, x, attn_mask=bias, need_weights=True, average_attn_weights=False)
    weights = weights[0]  # (heads, T, T): weights[h, i, j] = how much token i takes from token j
    n = ids.shape[1]
    for i in range(1, n + 1):
        for j in range(0, n + 1):
            same = j > 0 and ids[0, i - 1] == ids[0, j - 1]
            if same:
                assert (weights[:, i, j] > 0).all()
            else:
                assert (weights[:, i, j] == 0).all(), (i, j)
    assert (weights[:, 0, 1:] == 0).all() and torch.allclose(weights[:, 0, 0], torch.ones(heads))


def test_sam_masked_tower_isolates_segments_end_to_end(visual):
    # Every block masked by the same ids: a segment's outputs cannot depend on another segment's pixels.
    torch.manual_seed(1)
    grid = 224 // 16
    ids = (torch.arange(grid)[None, :] >= 6).long().expand(grid, grid).flatten()[None]  # left | right
    heads = num_heads(visual)
    bias = additive_bias(allowed_from_patch_ids(ids), heads, torch.float32)
    masks = [bias] * len(visual.transformer.resblocks)
    pixels = torch.randn(1, 3, 224, 224)
    changed = pixels.clone()
    changed[..., 6 * 16 :] = torch.randn_like(changed[..., 6 * 16 :])  # repaint the right segment only
    out_a = masked_forward(visual, pixels, masks)
    out_b = masked_forward(visual, changed, masks)
    left = (ids[0] == 0).nonzero().flatten() + 1
    right = (ids[0] == 1).nonzero().flatten() + 1
    torch.testing.assert_close(out_a[0, left], out_b[0, left], rtol=0, atol=1e-5)
    assert (out_a[0, right] - out_b[0, right]).abs().max() > 1e-3


def test_all_ones_id_map_equals_the_unmasked_tower(visual):
    # With one segment, patches attend to all patches; [CLS] is isolated, so the patch tokens must equal
    # the unmasked tower run without [CLS], and [CLS] the tower run on [CLS] alone.
    torch.manual_seed(2)
    pixels = torch.randn(2, 3, 224, 224)
    n = (224 // 16) ** 2
    heads = num_heads(visual)
    bias = additive_bias(allowed_from_patch_ids(torch.ones(2, n, dtype=torch.long)), heads, torch.float32)
    depth = len(visual.transformer.resblocks)
    masked = run_blocks(visual, embed_patches(visual, pixels), [bias] * depth)
    tokens = embed_patches(visual, pixels)
    unmasked_patches = run_blocks(visual, tokens[:, 1:], [None] * depth)
    unmasked_cls = run_blocks(visual, tokens[:, :1], [None] * depth)
    torch.testing.assert_close(masked[:, 1:], unmasked_patches, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(masked[:, :1], unmasked_cls, rtol=1e-5, atol=1e-5)


def test_self_only_blocks_make_each_token_depend_on_itself_only(visual):
    torch.manual_seed(3)
    pixels = torch.randn(1, 3, 224, 224)
    n_tokens = (224 // 16) ** 2 + 1
    bias = additive_bias(self_only_allowed(1, n_tokens), num_heads(visual), torch.float32)
    depth = len(visual.transformer.resblocks)
    out = masked_forward(visual, pixels, [bias] * depth)
    tokens = embed_patches(visual, pixels)
    # Slow version: each token alone through the unmasked tower (a 1-token sequence attends to itself).
    for t in (0, 1, 57, n_tokens - 1):
        alone = run_blocks(visual, tokens[:, t : t + 1], [None] * depth)
        alone = visual.ln_post(alone) @ visual.proj
        torch.testing.assert_close(out[:, t : t + 1], alone, rtol=1e-5, atol=1e-5)


def test_unmasked_schedule_matches_open_clip_pooled_output():
    model = create_clip(TINY_VIT_14, seed=4).float().eval()
    pixels = torch.randn(1, 3, 224, 224)
    out = masked_forward(model.visual, pixels, [None] * len(model.visual.transformer.resblocks))
    with torch.no_grad():
        pooled = model.visual(pixels)
    torch.testing.assert_close(out[:, 0], pooled, rtol=1e-5, atol=1e-5)
