"""Crop evaluation across read tiles: every global crop evaluated exactly once while the kept border
logits fit their budgets (memory, then a temporary file), SAM-grid alignment for window methods,
identical labels whatever the tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_pipeline import CROP, STRIDE, WindowMethod, random_image, read, run, write_raster

from engine.pipeline.segment import PipelineSettings, SegmentRequest, estimate, prepare
from engine.pipeline.tiling import crop_spans


class CountingMethod(WindowMethod):
    """Counts every crop evaluation by its global (row, col) in the working raster."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.evaluated: dict[tuple[int, int], int] = {}

    def crop_logits(self, crops: torch.Tensor, origins=None) -> torch.Tensor:
        (r0, c0), _ = self.windows[-1]
        for r, c in origins:
            key = (r0 + r, c0 + c)
            self.evaluated[key] = self.evaluated.get(key, 0) + 1
        return super().crop_logits(crops, origins)


@pytest.mark.parametrize("size", [(90, 110), (67, 41)])
def test_every_crop_is_evaluated_exactly_once_whatever_the_tiles(tmp_path, size):
    src = write_raster(tmp_path / "in.tif", random_image(*size, seed=5))
    prepared = prepare(
        SegmentRequest(input=src, gsd=0.5), CROP, STRIDE, PipelineSettings(), check_outputs=False
    )
    prepared.source.close()
    spans = (
        crop_spans(prepared.working.height, CROP, STRIDE),
        crop_spans(prepared.working.width, CROP, STRIDE),
    )
    every_crop = {(y0, x0) for y0, _ in spans[0] for x0, _ in spans[1]}
    outputs = []
    for tile_working in (7, 16, 23, 40, 1000):
        settings = PipelineSettings(tile_working=tile_working, batch_size=3)
        method = CountingMethod()
        result, _ = run(tmp_path, src, f"t{tile_working}", settings, 0.5, method=method)
        assert set(method.evaluated) == every_crop
        assert set(method.evaluated.values()) == {1}, tile_working
        windows = result.record["windows"]
        assert windows["crops_evaluated"] == windows["unique_crops"] == len(every_crop)
        if tile_working < 40:  # several tiles: borders share crops, used by each tile, evaluated once
            assert windows["tiles"] > 2 and windows["crop_uses"] > windows["crops_evaluated"]
            assert windows["kept_logits_peak_bytes"] > 0
        outputs.append(read(result.out))
    for labels in outputs[1:]:
        assert np.array_equal(labels, outputs[0])
    est = estimate(SegmentRequest(input=src, gsd=0.5), CROP, STRIDE, PipelineSettings(tile_working=7))
    assert est["crop_evaluations"] == est["crops"] == len(every_crop)


class SamGridMethod(CountingMethod):
    """A window method with a global SAM-window grid (ReSeg-CLIP's ``sam_window_px``)."""

    sam_window_px = 24


def test_windows_of_sam_grid_methods_are_aligned_to_the_grid(tmp_path):
    src = write_raster(tmp_path / "in.tif", random_image(90, 110, seed=6))
    settings = PipelineSettings(tile_working=20, batch_size=4)
    plain, _ = run(tmp_path, src, "plain", settings, 0.5)
    method = SamGridMethod()
    aligned, _ = run(tmp_path, src, "aligned", settings, 0.5, method=method)
    assert np.array_equal(read(plain.out), read(aligned.out))
    prepared = prepare(SegmentRequest(input=src, gsd=0.5), CROP, STRIDE, settings, check_outputs=False)
    prepared.source.close()
    height, width = prepared.working.height, prepared.working.width
    regions = [(row.region, col.region) for row, col in prepared.plan.tiles()]
    assert len(method.windows) == len(regions) > 4
    for ((r0, c0), (h, w)), (rows, cols) in zip(method.windows, regions):
        # Window edges on the 24-px grid (or the raster's edge) and the tile's crops inside it.
        assert r0 % 24 == 0 and c0 % 24 == 0
        assert (r0 + h) % 24 == 0 or r0 + h == height
        assert (c0 + w) % 24 == 0 or c0 + w == width
        assert r0 <= rows[0] and rows[1] <= r0 + h and c0 <= cols[0] and cols[1] <= c0 + w
    assert set(method.evaluated.values()) == {1}


def test_a_spent_budget_recomputes_border_crops_with_the_same_labels(tmp_path):
    """With no budget for logits kept across tile rows (in memory or on disk), the next row evaluates
    shared crops again: kept memory is then bounded by the tile, not the raster width, and the labels do
    not change."""
    src = write_raster(tmp_path / "in.tif", random_image(90, 110, seed=5))
    kept = PipelineSettings(tile_working=16, batch_size=3)
    spent = PipelineSettings(tile_working=16, batch_size=3, kept_logits_budget=0, kept_logits_spill_budget=0)
    counting_kept, counting_spent = CountingMethod(), CountingMethod()
    with_kept, _ = run(tmp_path, src, "kept", kept, 0.5, method=counting_kept)
    without, _ = run(tmp_path, src, "spent", spent, 0.5, method=counting_spent)
    assert set(counting_kept.evaluated.values()) == {1}
    assert max(counting_spent.evaluated.values()) > 1  # crops shared by two tile rows, evaluated twice
    assert set(counting_spent.evaluated) == set(counting_kept.evaluated)
    windows = without.record["windows"]
    assert windows["crops_evaluated"] == sum(counting_spent.evaluated.values())
    assert windows["kept_logits_peak_bytes"] < with_kept.record["windows"]["kept_logits_peak_bytes"]
    assert np.array_equal(read(without.out), read(with_kept.out))


def test_crops_past_the_memory_budget_are_parked_on_disk_and_read_back(tmp_path):
    """With no memory budget but room on disk, border crops go to a temporary file: each crop is still
    evaluated once, the outputs are bit-identical to a run that kept everything in memory, and no file is
    left beside the outputs."""
    src = write_raster(tmp_path / "in.tif", random_image(90, 110, seed=5))
    in_memory = PipelineSettings(tile_working=16, batch_size=3)
    on_disk = PipelineSettings(tile_working=16, batch_size=3, kept_logits_budget=0)
    counting = CountingMethod()
    kept, _ = run(tmp_path, src, "memory", in_memory, 0.5, confidence=str(tmp_path / "memory_conf.tif"))
    parked, _ = run(
        tmp_path, src, "disk", on_disk, 0.5, method=counting, confidence=str(tmp_path / "disk_conf.tif")
    )
    assert set(counting.evaluated.values()) == {1}
    windows = parked.record["windows"]
    assert windows["crops_evaluated"] == windows["unique_crops"]
    assert windows["kept_logits_spilled_crops"] > 0 and windows["kept_logits_spill_peak_bytes"] > 0
    assert windows["kept_logits_peak_bytes"] < kept.record["windows"]["kept_logits_peak_bytes"]
    assert kept.record["windows"]["kept_logits_spilled_crops"] == 0
    assert np.array_equal(read(parked.out), read(kept.out))
    assert np.array_equal(read(parked.confidence), read(kept.confidence))
    assert not [p.name for p in tmp_path.iterdir() if "spill" in p.name]


def test_a_disk_that_refuses_the_spill_falls_back_to_evaluating_again(tmp_path, monkeypatch, caplog):
    """A full disk (or an unwritable folder) costs repeated work, never the run or its labels."""
    from engine.pipeline.spill_file import SpillFile

    def disk_full(self, array):
        raise OSError(28, "No space left on device")

    src = write_raster(tmp_path / "in.tif", random_image(90, 110, seed=5))
    reference, _ = run(tmp_path, src, "memory", PipelineSettings(tile_working=16, batch_size=3), 0.5)
    monkeypatch.setattr(SpillFile, "park", disk_full)
    counting = CountingMethod()
    settings = PipelineSettings(tile_working=16, batch_size=3, kept_logits_budget=0)
    with caplog.at_level("WARNING"):
        result, _ = run(tmp_path, src, "full", settings, 0.5, method=counting)
    assert max(counting.evaluated.values()) > 1
    assert result.record["windows"]["kept_logits_spilled_crops"] == 0
    assert "No space left on device" in caplog.text
    assert np.array_equal(read(result.out), read(reference.out))


def test_counted_evaluations_are_the_runs_whatever_the_budget(tmp_path):
    """The estimate's count simulates the kept-logits budget: it equals what a run evaluates, including
    the crops evaluated again when the budget cannot hold them for the next tile row."""
    from test_pipeline import VOCAB

    from engine.pipeline.crop_logits import count_crop_evaluations

    src = write_raster(tmp_path / "in.tif", random_image(90, 110, seed=5))
    queries = len(VOCAB.queries())
    unbounded, _ = run(tmp_path, src, "free", PipelineSettings(tile_working=16, batch_size=3), 0.5)
    needed = unbounded.record["windows"]["kept_logits_peak_bytes"]
    counts = set()
    budgets = [(None, 0), (0, 0), (needed // 3, 0), (needed // 2, 0), (0, needed // 3), (0, needed)]
    for budget, spill in budgets:
        settings = PipelineSettings(
            tile_working=16, batch_size=3, kept_logits_budget=budget, kept_logits_spill_budget=spill
        )
        result, _ = run(tmp_path, src, f"b{budget}-{spill}", settings, 0.5)
        prepared = prepare(SegmentRequest(input=src, gsd=0.5), CROP, STRIDE, settings, check_outputs=False)
        prepared.source.close()
        evaluated = result.record["windows"]["crops_evaluated"]
        assert count_crop_evaluations(prepared.plan, budget, queries, spill) == evaluated
        told = estimate(SegmentRequest(input=src, gsd=0.5), CROP, STRIDE, settings, queries=queries)
        assert told["crop_evaluations"] == evaluated
        counts.add(evaluated)
    assert len(counts) >= 4  # the budgets made a difference the count had to follow
    assert result.record["windows"]["crops_evaluated"] == result.record["windows"]["unique_crops"]
