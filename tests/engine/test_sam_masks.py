"""SAM masks for ReSeg-CLIP: one embedding per image for all parameter sets, empty tiles, the cache,
windows larger than SAM's, and parameter validation. Tiny random SAM; small windows."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator

from engine.errors import UserError
from engine.models.sam_architectures import SAM_ARCHITECTURES
from engine.sam.generator import WindowMaskGenerator
from engine.sam.id_map import paint_id_map
from engine.sam.mask_cache import WindowMaskCache
from engine.sam.parameter_sets import REFERENCE_PARAMETER_SETS, SamParameterSet, parameter_set_from_dict
from engine.sam.stats import SegmentationCost
from engine.sam.window_masks import SamWindowMasks, even_splits, grid_splits

# Thresholds of 0 keep whatever a random SAM predicts, so masks exist to compare.
PERMISSIVE = (
    SamParameterSet("p1", 2, 0.0, 0.0, 0),
    SamParameterSet("p2", 2, 0.0, 0.0, 20),
)


def tiny_sam_small_input(image_size: int = 256, prompt_dim: int = 32, seed: int = 1):
    """The "tiny" SAM encoder with a 256-px input instead of 1024 and a narrow prompt encoder and mask
    decoder (32 channels instead of 256): segment-anything's own modules and code paths, fast enough
    for unit tests on two busy cores."""
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    spec = SAM_ARCHITECTURES["tiny"]
    torch.manual_seed(seed)
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=spec.encoder_depth,
            embed_dim=spec.encoder_embed_dim,
            img_size=image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=spec.encoder_num_heads,
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=spec.encoder_global_attn_indexes,
            window_size=14,
            out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(image_size // 16, image_size // 16),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=prompt_dim, mlp_dim=4 * prompt_dim, num_heads=2
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=prompt_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Every test here runs tiny models (see conftest)."""


@pytest.fixture(scope="module")
def sam():
    return tiny_sam_small_input()


@pytest.fixture(scope="module")
def window():
    rng = np.random.default_rng(0)
    image = np.full((96, 112, 3), 40, np.uint8)
    image[20:70, 30:90] = (200, 60, 60)
    return np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)


def test_reference_parameter_sets_are_the_papers():
    values = [
        (
            p.points_per_side,
            p.pred_iou_thresh,
            p.stability_score_thresh,
            p.min_mask_region_area,
            p.crop_n_layers,
        )
        for p in REFERENCE_PARAMETER_SETS
    ]
    assert values == [
        (4, 0.5, 0.5, 500, 1),
        (2, 0.6, 0.6, 500, 1),
        (2, 0.5, 0.5, 1000, 1),
        (2, 0.5, 0.5, 2000, 1),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {
                "points_per_side": 0,
                "pred_iou_thresh": 0.5,
                "stability_score_thresh": 0.5,
                "min_mask_region_area": 1,
            },
            "points_per_side",
        ),
        (
            {
                "points_per_side": 4,
                "pred_iou_thresh": 1.5,
                "stability_score_thresh": 0.5,
                "min_mask_region_area": 1,
            },
            "pred_iou_thresh",
        ),
        (
            {
                "points_per_side": 4,
                "pred_iou_thresh": 0.5,
                "stability_score_thresh": float("nan"),
                "min_mask_region_area": 1,
            },
            "stability_score_thresh",
        ),
        (
            {
                "points_per_side": 4,
                "pred_iou_thresh": 0.5,
                "stability_score_thresh": 0.5,
                "min_mask_region_area": -1,
            },
            "min_mask_region_area",
        ),
        (
            {
                "points_per_side": 1,
                "pred_iou_thresh": 0.5,
                "stability_score_thresh": 0.5,
                "min_mask_region_area": 1,
            },
            "no points in crop layer",
        ),
        ({"points_per_side": 4, "colour": "red"}, "unknown keys"),
    ],
)
def test_impossible_parameter_sets_are_user_errors(data, message):
    with pytest.raises(UserError, match=message):
        parameter_set_from_dict(data, "mine")


def test_point_grid_scales_with_the_window_to_keep_the_reference_density():
    fine = REFERENCE_PARAMETER_SETS[0]
    assert fine.points_per_side_for(224) == 4
    assert fine.points_per_side_for(896) == 16
    assert fine.points_per_side_for(100) == 4  # never sparser than the reference tile


def test_shared_embedding_gives_the_masks_of_separate_generators_with_one_encoder_pass_per_image(sam, window):
    cost = SegmentationCost()
    shared = WindowMaskGenerator(sam, PERMISSIVE, cost).id_maps(window, [0, 1])
    # 1 pass for the window + 4 for the crop-layer crops, whatever the number of parameter sets.
    assert cost.sam_encoder_passes == 1 + 4
    expected = upstream_id_maps(sam, PERMISSIVE, window)
    assert (expected.reshape(len(PERMISSIVE), -1).max(axis=1) > 0).all(), "the comparison needs masks"
    np.testing.assert_array_equal(shared, expected)


def test_no_surviving_mask_gives_id_zero_everywhere(sam):
    uniform = np.full((64, 64, 3), 128, np.uint8)
    impossible = SamParameterSet("none-pass", 2, 1.0, 0.0, 0)  # predicted IoU is never above 1
    upstream = SamAutomaticMaskGenerator(sam, points_per_side=2, pred_iou_thresh=1.0, crop_n_layers=1)
    with pytest.raises(IndexError):
        upstream.generate(uniform)  # segment-anything's own behaviour, which ours must survive
    maps = WindowMaskGenerator(sam, [impossible], SegmentationCost()).id_maps(uniform, [0])
    assert maps.shape == (1, 64, 64) and (maps == 0).all()


def test_cache_hit_costs_no_encoder_pass_and_survives_on_disk(sam, window, tmp_path):
    cost = SegmentationCost()
    masks = SamWindowMasks(
        sam, PERMISSIVE, [0, 1], cache=WindowMaskCache(tmp_path), cost=cost, model_identity="t"
    )
    first = masks.id_maps(window)
    passes = cost.sam_encoder_passes
    assert passes == 5 and cost.sam_windows_computed == 1
    again = masks.id_maps(window)
    assert cost.sam_encoder_passes == passes and cost.sam_windows_cached == 1
    np.testing.assert_array_equal(first, again)
    # A new process (new cache object, same folder) finds the masks on disk.
    fresh_cost = SegmentationCost()
    fresh = SamWindowMasks(
        sam, PERMISSIVE, [0, 1], cache=WindowMaskCache(tmp_path), cost=fresh_cost, model_identity="t"
    )
    np.testing.assert_array_equal(fresh.id_maps(window), first)
    assert fresh_cost.sam_encoder_passes == 0
    # Other SAM settings are another cache entry.
    other = SamWindowMasks(
        sam, PERMISSIVE, [1], cache=WindowMaskCache(tmp_path), cost=fresh_cost, model_identity="t"
    )
    other.id_maps(window)
    assert fresh_cost.sam_encoder_passes == 5


def test_cache_keeps_ids_compact_and_bounded_by_bytes():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 200, size=(2, 64, 64)).astype(np.int32)  # fits uint8
    medium = rng.integers(0, 3000, size=(2, 64, 64)).astype(np.int32)  # fits uint16
    cache = WindowMaskCache(max_bytes=small.size + 2 * medium.size)  # room for both, compacted
    cache.put("a", small)
    cache.put("b", medium)
    assert cache.get("a").dtype == np.uint8 and cache.get("b").dtype == np.uint16
    np.testing.assert_array_equal(cache.get("a"), small)  # same ids, smaller type
    np.testing.assert_array_equal(cache.get("b"), medium)
    assert cache.bytes == small.size + 2 * medium.size
    cache.get("a")  # now "b" is the least recently used
    cache.put("c", small + 1)
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.bytes <= cache.max_bytes
    huge = WindowMaskCache(max_bytes=10)  # smaller than any entry: the newest one still stays
    huge.put("x", medium)
    assert len(huge) == 1 and huge.get("x") is not None


def test_even_splits_cover_without_gaps():
    for length, piece in [(1000, 896), (896, 896), (100, 896), (2000, 300)]:
        splits = even_splits(length, piece)
        assert splits[0][0] == 0 and splits[-1][1] == length
        assert all(a[1] == b[0] for a, b in itertools.pairwise(splits))
        assert all(0 < stop - start <= piece for start, stop in splits)
        assert len(splits) == math.ceil(length / piece)


def test_large_windows_are_split_and_ids_stay_unique_across_sam_windows(monkeypatch, sam):
    calls = []

    def fake(self, sub_window):
        calls.append(sub_window.shape[:2])
        maps = np.zeros((1, *sub_window.shape[:2]), np.int32)
        maps[0, :, : sub_window.shape[1] // 2] = 1
        maps[0, :, sub_window.shape[1] // 2 :] = 2
        return maps

    monkeypatch.setattr(SamWindowMasks, "sam_window_id_maps", fake)
    masks = SamWindowMasks(sam, PERMISSIVE, [0], sam_window_px=100)
    maps = masks.id_maps(np.zeros((150, 250, 3), np.uint8))
    assert calls == [(75, 83), (75, 84), (75, 83)] * 2
    # 6 SAM windows × 2 segments each, all distinct.
    assert sorted(np.unique(maps)) == list(range(1, 13))


def test_grid_splits_follow_the_global_grid():
    assert grid_splits(0, 250, 100) == [(0, 100), (100, 200), (200, 250)]
    assert grid_splits(130, 250, 100) == [(0, 70), (70, 170), (170, 250)]
    assert grid_splits(200, 100, 100) == [(0, 100)]
    assert grid_splits(210, 50, 100) == [(0, 50)]


def varied_decoder(real_forward, calls: list):
    """Wraps a mask decoder's forward: records each call's image embedding (one per crop) and, since a
    random SAM predicts near-identical whole-window masks with stability 0 (one mask survives NMS),
    adds a blob per output whose centre, radius and softness, and a predicted IoU, are drawn from a
    generator seeded by the prompt. The outputs stay a deterministic function of the decoder's inputs,
    which is all that sharing one decoder run assumes; their scores now spread across the thresholds."""
    import hashlib

    import torch

    def forward(**inputs):
        embedding = inputs["image_embeddings"].detach().numpy().tobytes()
        calls.append(hashlib.blake2b(embedding, digest_size=8).hexdigest())
        masks, iou = real_forward(**inputs)
        side = masks.shape[-1]
        yy, xx = torch.meshgrid(torch.arange(side).float(), torch.arange(side).float(), indexing="ij")
        out = torch.empty_like(masks)
        for b, prompt in enumerate(inputs["sparse_prompt_embeddings"]):
            draw = torch.Generator().manual_seed(int(prompt.abs().sum().item() * 1e4) % 2**31)
            for j in range(masks.shape[1]):
                cy, cx = torch.rand(2, generator=draw) * side
                radius = 4 + torch.rand(1, generator=draw) * side / 3
                softness = 1 + torch.rand(1, generator=draw) * 6
                out[b, j] = (radius - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()) / softness + masks[b, j]
        seed = int(out.abs().sum().item()) % 2**31
        return out, torch.rand(iou.shape, generator=torch.Generator().manual_seed(seed))

    return forward


class UpstreamWithEmptyCrops(SamAutomaticMaskGenerator):
    """segment-anything's generator, with only its empty-crop crash avoided (a crop keeping no mask
    gets (0, 4) crop boxes instead of a 1-D empty tensor; see test_no_surviving_mask...)."""

    def _process_crop(self, image, crop_box, crop_layer_idx, orig_size):
        import torch

        data = super()._process_crop(image, crop_box, crop_layer_idx, orig_size)
        if len(data["rles"]) == 0:
            data["crop_boxes"] = torch.zeros((0, 4), dtype=torch.int64)
        return data


def upstream_id_maps(sam, parameter_sets, window) -> np.ndarray:
    """One segment-anything generator per set, run separately: the independent reference."""
    side = max(window.shape[:2])
    maps = []
    for params in parameter_sets:
        records = UpstreamWithEmptyCrops(
            sam,
            points_per_side=params.points_per_side_for(side),
            pred_iou_thresh=params.pred_iou_thresh,
            stability_score_thresh=params.stability_score_thresh,
            crop_n_layers=params.crop_n_layers,
            crop_n_points_downscale_factor=params.crop_n_points_downscale_factor,
            min_mask_region_area=params.min_mask_region_area,
        ).generate(window)
        maps.append(paint_id_map([r["segmentation"] for r in records], window.shape[:2]))
    return np.stack(maps)


# Three sets on one 2-point grid with different thresholds and region areas, one on a 4-point grid.
SPREAD = (
    SamParameterSet("loose", 2, 0.3, 0.2, 0),
    SamParameterSet("strict", 2, 0.5, 0.3, 0),
    SamParameterSet("loose-clean", 2, 0.3, 0.2, 300),
    SamParameterSet("fine", 4, 0.5, 0.1, 100),
)


@pytest.mark.parametrize("masks_per_group", [16, 5], ids=["one-group", "several-groups"])
@pytest.mark.parametrize("parameter_sets", [SPREAD, REFERENCE_PARAMETER_SETS], ids=["spread", "reference"])
def test_sets_sharing_a_point_grid_share_each_decoder_run_and_keep_their_masks(
    monkeypatch, sam, window, parameter_sets, masks_per_group
):
    from collections import Counter

    from engine.sam import shared_decoder

    monkeypatch.setattr(shared_decoder, "MASKS_PER_GROUP", masks_per_group)

    calls: list[str] = []
    monkeypatch.setattr(sam.mask_decoder, "forward", varied_decoder(sam.mask_decoder.forward, calls))
    indices = list(range(len(parameter_sets)))
    shared = WindowMaskGenerator(sam, parameter_sets, SegmentationCost()).id_maps(window, indices)
    shared_calls = Counter(calls)
    calls.clear()
    unshared = WindowMaskGenerator(sam, parameter_sets, SegmentationCost(), share_decoder=False).id_maps(
        window, indices
    )
    unshared_calls = Counter(calls)
    calls.clear()
    expected = upstream_id_maps(sam, parameter_sets, window)
    # Window + 4 crops; every set decodes each crop's grid in one batch. Two distinct grids (2 and 4
    # points per side on this window) → 2 decoder runs per crop shared, one per set (4) unshared.
    assert len(shared_calls) == len(unshared_calls) == 5
    assert set(shared_calls.values()) == {2}
    assert set(unshared_calls.values()) == {4}
    np.testing.assert_array_equal(shared, unshared)
    np.testing.assert_array_equal(shared, expected)
    # The comparison is not vacuous: the sets sharing the 2-point grid keep masks; in SPREAD every set
    # keeps masks and each keeps different ones (thresholds and region areas all matter).
    assert expected[1:].max() > 0
    if parameter_sets is SPREAD:
        assert all(m.max() > 0 for m in expected)
        assert len({m.tobytes() for m in expected}) == len(parameter_sets)


def test_rle_records_are_shared_not_copied_when_merged():
    import copy

    from segment_anything.utils.amg import MaskData

    from engine.sam.rle import SharedRle, shared_rles

    rles = shared_rles([{"size": [2, 2], "counts": [1, 2, 1]}])
    merged = MaskData(rles=[])
    merged.cat(MaskData(rles=rles))  # upstream deep-copies every list it appends
    assert merged["rles"][0] is rles[0] and isinstance(rles[0], SharedRle)
    assert copy.deepcopy(rles)[0] is rles[0]
    assert rles[0] == {"size": [2, 2], "counts": [1, 2, 1]}  # still an ordinary record to every reader


def test_run_lengths_are_segment_anythings():
    from segment_anything.utils.amg import mask_to_rle_pytorch, rle_to_mask

    from engine.sam.rle import SharedRle, masks_to_rles

    generator = torch.Generator().manual_seed(3)
    blobs = torch.nn.functional.interpolate(torch.randn(5, 1, 6, 5, generator=generator), size=(37, 23))[:, 0]
    masks = torch.cat(
        [
            blobs > 0.2,  # smooth masks, some starting inside, some outside
            torch.rand(3, 37, 23, generator=generator) > 0.5,  # many short runs
            torch.zeros(1, 37, 23, dtype=torch.bool),
            torch.ones(1, 37, 23, dtype=torch.bool),
        ]
    )
    assert masks[:, 0, 0].any() and not masks[:, 0, 0].all()
    records = masks_to_rles(masks)
    assert records == mask_to_rle_pytorch(masks)
    assert all(isinstance(r, SharedRle) for r in records)
    for record, mask in zip(records, masks):
        np.testing.assert_array_equal(rle_to_mask(record), mask.numpy())
    assert masks_to_rles(masks[:0]) == []
