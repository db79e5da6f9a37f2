"""Crop grid, bilinear sampling conventions and tile planning."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.pipeline.tiling import (
    aligned_extent,
    crop_spans,
    crop_users,
    kept_extent,
    plan_axis,
    plan_tiles,
)
from engine.raster.bilinear import bilinear_axis, output_sampling, resample_bilinear


def mmseg_slide_spans(length, crop, stride):
    """mmseg's slide_inference grid, transcribed literally for one axis."""
    grids = max(length - crop + stride - 1, 0) // stride + 1
    out = []
    for idx in range(grids):
        start = idx * stride
        end = min(start + crop, length)
        start = max(end - crop, 0)
        out.append((start, end))
    return out


@pytest.mark.parametrize("length", [1, 100, 224, 225, 335, 336, 337, 448, 1000])
def test_crop_spans_match_mmseg_and_cover_every_pixel(length):
    spans = crop_spans(length, 224, 112)
    assert spans == mmseg_slide_spans(length, 224, 112)
    covered = np.zeros(length, int)
    for start, end in spans:
        assert end - start == min(224, length)
        covered[start:end] += 1
    assert covered.min() >= 1
    assert crop_spans(448, 224, 112) == [(0, 224), (112, 336), (224, 448)]


@pytest.mark.parametrize(
    "shape, size", [((37, 53), (17, 29)), ((20, 20), (61, 47)), ((1000, 1000), (448, 448))]
)
def test_resample_matches_torch_and_cv2(shape, size):
    rng = np.random.default_rng(0)
    image = rng.random((3, *shape)).astype(np.float32)
    rows = bilinear_axis(0, size[0], shape[0] / size[0], shape[0])
    cols = bilinear_axis(0, size[1], shape[1] / size[1], shape[1])
    ours = resample_bilinear(image, rows, cols)
    ref = F.interpolate(torch.from_numpy(image)[None], size=size, mode="bilinear", align_corners=False)[0]
    # torch and cv2 compute source coordinates in float32 (error ~1e-7 x coordinate); ours in float64.
    np.testing.assert_allclose(ours, ref.numpy(), atol=2e-4)
    ref_cv2 = cv2.resize(image.transpose(1, 2, 0), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(ours, ref_cv2.transpose(2, 0, 1), atol=3e-4)


def test_resample_of_a_window_equals_the_window_of_the_whole():
    rng = np.random.default_rng(1)
    logits = rng.random((4, 40, 50)).astype(np.float32)
    whole = resample_bilinear(logits, output_sampling(0, 93, 93, 40), output_sampling(0, 111, 111, 50))
    rows, cols = output_sampling(30, 61, 93, 40), output_sampling(7, 90, 111, 50)
    r0, c0 = rows.first, cols.first
    part = resample_bilinear(logits[:, r0 : rows.last + 1, c0 : cols.last + 1], rows, cols, (r0, c0))
    assert np.array_equal(part, whole[:, 30:61, 7:90])


@pytest.mark.parametrize("tile", [16, 50, 97, 1000])
def test_plan_axis_partitions_output_and_covers_needed_pixels(tile):
    tiles, spans = plan_axis(1000, 448, tile, 224, 112)
    assert tiles[0].out[0] == 0 and tiles[-1].out[1] == 1000
    for a, b in itertools.pairwise(tiles):
        assert a.out[1] == b.out[0]
    for t in tiles:
        sampling = output_sampling(*t.out, 1000, 448)
        assert t.needed == (sampling.first, sampling.last + 1)
        touching = [k for k, (s, e) in enumerate(spans) if s < t.needed[1] and e > t.needed[0]]
        assert list(range(*t.crops)) == touching
        assert t.region[0] <= t.needed[0] and t.region[1] >= t.needed[1]


def test_plan_tiles_counts():
    plan = plan_tiles(1000, 1000, 448, 448, 224, 112, tile_working=896, max_output_tile=4096)
    assert plan.tile_count == 1 and plan.unique_crops == 9 and plan.crop_runs == 9
    small = plan_tiles(1000, 1000, 448, 448, 224, 112, tile_working=100, max_output_tile=4096)
    assert small.tile_count > 1 and small.crop_runs > small.unique_crops == 9


@pytest.mark.parametrize("tile", [16, 50, 97, 1000])
def test_crop_users_and_kept_extent(tile):
    tiles, spans = plan_axis(1000, 448, tile, 224, 112)
    users = crop_users(tiles, len(spans))
    for k in range(len(spans)):
        using = [t for t, axis_tile in enumerate(tiles) if k in range(*axis_tile.crops)]
        assert users[k] == (using[0], using[-1])
        later = range(using[0] + 1, using[-1] + 1)
        kept = kept_extent(spans[k], tiles, later)
        # Every pixel a later tile needs of this crop is kept, and nothing before the first such need.
        for t in later:
            lo, hi = max(spans[k][0], tiles[t].needed[0]), min(spans[k][1], tiles[t].needed[1])
            assert kept[0] <= lo and hi <= kept[1]
        assert spans[k][0] <= kept[0] <= kept[1] <= spans[k][1]
    assert kept_extent((5, 9), tiles, range(0)) == (5, 5)


def test_crop_evaluations_count_each_used_crop_once():
    # 4000 px raster at 1792 working px (SegEarth-OV geometry): 15 x 15 crops in 2 x 2 tiles.
    plan = plan_tiles(4000, 4000, 1792, 1792, 224, 112, tile_working=896, max_output_tile=4096)
    assert plan.unique_crops == plan.crop_evaluations == 225
    assert plan.tile_count == 4 and plan.crop_runs == 324  # uses: border crops count per tile


def test_aligned_extent():
    assert aligned_extent((100, 900), 896, 5000) == (0, 1792)
    assert aligned_extent((896, 1792), 896, 5000) == (896, 1792)
    assert aligned_extent((1000, 1100), 896, 1500) == (896, 1500)
