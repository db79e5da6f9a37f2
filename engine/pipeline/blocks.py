"""Blocks of read tiles: the unit of work of every run, local or on a Dask cluster.

A block is a rectangle of read tiles of the run's global ``TilePlan`` (tile rows [r0, r1) × tile
columns [c0, c1)): four numbers and an index, never pixels. ``process_block`` is the one function that
turns a block into class labels (and confidence): the local run processes the whole plan as one block
(``whole_plan``), a resumable or distributed run processes many (``plan_blocks``), each into its own
part file.

Why a block gives exactly the pixels of the whole run: every tile averages all crops of the GLOBAL crop
grid touching its pixels, in global row-major order (engine.pipeline.crop_logits), and reads exactly the
working pixels those crops (or, for ReSeg-CLIP, the global SAM windows holding them) cover. A block
works on a sub-plan with the same crop spans, so its tiles see the same crops, the same image context and
add them in the same order; only crops shared with a neighbouring block are evaluated once per block
instead of once per run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.pipeline.batch_schedule import BatchSchedule, WithForeign
from engine.pipeline.crop_logits import CropRunner, CropStore, average_tile_logits, tile_crops
from engine.pipeline.progress import CancelToken, ProgressCallback, ProgressEvent, ignore_progress
from engine.pipeline.scoring import score
from engine.pipeline.tiling import TilePlan, aligned_extent
from engine.raster.bilinear import output_sampling, resample_bilinear
from engine.raster.sampling import working_image
from engine.raster.writer import CONFIDENCE_NODATA


@dataclass(frozen=True)
class Block:
    """Tile rows ``rows`` = [r0, r1) × tile columns ``cols`` = [c0, c1) of the run's plan."""

    index: int
    rows: tuple[int, int]
    cols: tuple[int, int]

    def window(self, plan: TilePlan) -> tuple[int, int, int, int]:
        """(x0, y0, width, height): the block's output pixels in the output grid."""
        y0, y1 = plan.rows[self.rows[0]].out[0], plan.rows[self.rows[1] - 1].out[1]
        x0, x1 = plan.cols[self.cols[0]].out[0], plan.cols[self.cols[1] - 1].out[1]
        return x0, y0, x1 - x0, y1 - y0

    def describe(self, plan: TilePlan) -> str:
        x0, y0, width, height = self.window(plan)
        return (
            f"block {self.index} (tile rows {self.rows[0]}-{self.rows[1] - 1}, columns "
            f"{self.cols[0]}-{self.cols[1] - 1}; output pixels x {x0}-{x0 + width}, y {y0}-{y0 + height})"
        )

    def to_json(self) -> list[int]:
        return [self.index, *self.rows, *self.cols]

    @classmethod
    def from_json(cls, numbers) -> Block:
        index, r0, r1, c0, c1 = (int(n) for n in numbers)
        return cls(index, (r0, r1), (c0, c1))


def whole_plan(plan: TilePlan) -> Block:
    return Block(0, (0, len(plan.rows)), (0, len(plan.cols)))


def plan_blocks(plan: TilePlan, block_tiles: int) -> list[Block]:
    """Blocks of ``block_tiles`` × ``block_tiles`` read tiles, row-major (the last ones smaller)."""
    side = max(1, int(block_tiles))
    blocks = []
    for r0 in range(0, len(plan.rows), side):
        for c0 in range(0, len(plan.cols), side):
            rows = (r0, min(r0 + side, len(plan.rows)))
            cols = (c0, min(c0 + side, len(plan.cols)))
            blocks.append(Block(len(blocks), rows, cols))
    return blocks


def block_plan(plan: TilePlan, block: Block) -> TilePlan:
    """The block's tiles with the run's global crop spans (tile indices local to the block)."""
    return TilePlan(
        plan.rows[slice(*block.rows)], plan.cols[slice(*block.cols)], plan.row_spans, plan.col_spans
    )


class BlockSink:
    """Where a block's results go: ``write(labels, confidence, x, y)`` at output-grid pixel (x, y)."""

    def write(self, labels: np.ndarray, confidence: np.ndarray | None, x: int, y: int) -> None:
        raise NotImplementedError


@dataclass
class BlockContext:
    """What processing blocks needs in one process: the open source, the method with its queries set,
    the run's grids, plan and scoring rules. Counters and timings add up over the blocks it processes."""

    source: object  # engine.raster.reader.RasterSource
    stretch: object  # engine.raster.stretch.Stretch
    grid: object  # engine.raster.grid.OutputGrid
    working: object  # engine.raster.grid.WorkingGrid
    plan: TilePlan
    method: object
    run: CropRunner
    query_to_class: object
    thresholds: list[float]
    logit_scale: float
    kind: str
    settings: object  # engine.pipeline.segment.PipelineSettings
    with_confidence: bool
    spill_folder: Path | None
    cancel: CancelToken = field(default_factory=CancelToken)
    progress: ProgressCallback = ignore_progress
    total_crops: int = 1
    done: dict = field(default_factory=lambda: {"crops": 0, "tiles": 0, "skipped": 0, "evaluated": 0})
    timings: dict = field(default_factory=lambda: {"read": 0.0, "scoring": 0.0, "write": 0.0})
    kept: dict = field(default_factory=lambda: {"peak_bytes": 0, "spilled_crops": 0, "spill_peak_bytes": 0})
    schedule: BatchSchedule | None = None  # the local run's crop batches (made on first use)

    def batch_schedule(self) -> BatchSchedule:
        if self.schedule is None:
            self.schedule = BatchSchedule(self.plan, self.run.batch_size, self._tile_skipped)
        return self.schedule

    def _tile_skipped(self, tile) -> bool:
        """Whether a tile of the plan has no valid pixel (the local run skips it)."""
        (oy0, oy1), (ox0, ox1) = self.plan.rows[tile[0]].out, self.plan.cols[tile[1]].out
        window = self.grid.window
        return not self.source.read(window.xoff + ox0, window.yoff + oy0, ox1 - ox0, oy1 - oy0)[1].any()

    def fraction(self) -> float:
        return min(0.02 + 0.96 * self.done["crops"] / max(1, self.total_crops), 0.98)


def process_block(context: BlockContext, block: Block, sink: BlockSink) -> None:
    """Classify every output pixel of ``block`` and hand it to ``sink`` (strip by strip, tile by tile)."""
    c = context
    plan = block_plan(c.plan, block)
    settings, grid, working, done, timings = c.settings, c.grid, c.working, c.done, c.timings
    store = CropStore(
        plan, settings.kept_logits_budget, settings.kept_logits_spill_budget, spill_folder=c.spill_folder
    )
    prepare_window = getattr(c.method, "prepare_window", None)
    release_window = getattr(c.method, "release_window", None)
    # ReSeg-CLIP cuts SAM windows on a global grid of this many working pixels: read windows widened to
    # that grid hold every SAM window whole, so a crop's segments never depend on the tile it runs in.
    sam_window_px = getattr(c.method, "sam_window_px", None) if prepare_window is not None else None
    if prepare_window is not None:
        timings.setdefault("prepare_window", 0.0)
    tile_count = c.plan.tile_count
    schedule = c.batch_schedule()

    def on_batch(n: int) -> None:
        done["crops"] += n
        done["evaluated"] += n
        c.progress(ProgressEvent(c.fraction(), "inference", f"tile {done['tiles'] + 1}/{tile_count}"))

    try:
        for tile in ((r, k) for r in range(len(plan.rows)) for k in range(len(plan.cols))):
            row, col = plan.rows[tile[0]], plan.cols[tile[1]]
            whole = (block.rows[0] + tile[0], block.cols[0] + tile[1])  # the tile in the run's plan
            c.cancel.check()
            (oy0, oy1), (ox0, ox1) = row.out, col.out
            tic = time.perf_counter()
            # Only the validity is kept: the bands, at output resolution, would outlive the tile's tensors.
            valid = c.source.read(grid.window.xoff + ox0, grid.window.yoff + oy0, ox1 - ox0, oy1 - oy0)[1]
            schedule.known[whole] = not valid.any()
            if not valid.any():
                # Nothing to classify: the crops touching this tile only matter for its own pixels.
                done["skipped"] += 1
                done["crops"] += sum(store.get(key) is None for key in tile_crops(row, col))
                store.finish_tile(tile)
                no_confidence = np.full(valid.shape, CONFIDENCE_NODATA, np.float32)
                sink.write(
                    np.zeros(valid.shape, np.uint8), no_confidence if c.with_confidence else None, ox0, oy0
                )
                done["tiles"] += 1
                continue
            # Crops owned by tiles outside the block, evaluated in their owners' batches first.
            foreign = _foreign_crops(c, schedule, block, whole, row, col, store, sam_window_px)
            rows_read, cols_read = read_extent(plan, row, col, sam_window_px)
            image = padded_image(c.source, c.stretch, grid, working, rows_read, cols_read)
            timings["read"] += time.perf_counter() - tic
            if prepare_window is not None:
                # Window-level preparation (ReSeg-CLIP: SAM masks); the origin puts the window in the
                # working raster so its SAM windows fall on one global grid and are cached.
                c.progress(ProgressEvent(c.fraction(), "masks", f"tile {done['tiles'] + 1}/{tile_count}"))
                tic = time.perf_counter()
                prepare_window(torch.from_numpy(image), origin=(rows_read[0], cols_read[0]))
                timings["prepare_window"] += time.perf_counter() - tic
            try:
                seen = WithForeign(store, foreign, plan) if foreign else store
                logits = average_tile_logits(
                    image, (rows_read[0], cols_read[0]), tile, plan, c.run, seen, on_batch
                )
            finally:
                if release_window is not None:
                    release_window()
            for key, crop_logits in foreign.items():
                store.keep(key, crop_logits, tile)
            del foreign
            store.finish_tile(tile)
            del image
            _score_tile(c, logits, valid, row, col, sink)
            # Free this tile's logits before the next tile allocates its own: held across the next
            # tile, each is another tile-sized block on the heap (~90 MB for a 1792-px-wide raster).
            del logits
            done["tiles"] += 1
    finally:
        c.kept["peak_bytes"] = max(c.kept["peak_bytes"], store.peak_bytes)
        c.kept["spilled_crops"] += store.spilled_crops
        c.kept["spill_peak_bytes"] = max(c.kept["spill_peak_bytes"], store.peak_spilled_bytes)
        store.close()


def read_extent(plan: TilePlan, row, col, sam_window_px) -> tuple[tuple[int, int], tuple[int, int]]:
    """Working rows and columns a tile reads: its crops' region, widened to whole SAM windows when the
    method cuts them on a global grid (ReSeg-CLIP), cut to the crops' extent (past the raster when edge
    crops are padded, plan_tiles)."""
    if not sam_window_px:
        return row.region, col.region
    return (
        aligned_extent(row.region, int(sam_window_px), plan.row_spans[-1][1]),
        aligned_extent(col.region, int(sam_window_px), plan.col_spans[-1][1]),
    )


def _foreign_crops(c: BlockContext, schedule, block, whole, row, col, store, sam_window_px) -> dict:
    """Logits of the crops tile ``whole`` needs whose owner lies outside ``block``, each evaluated with
    its owner's whole batch on the owner's image. (A crop owned inside the block and no longer kept was
    dropped by the kept-logits budgets: the tile evaluates it again, as the local run does.)"""
    foreign: dict = {}
    needed = tile_crops(row, col)
    for key in needed:
        if key in foreign or store.get(key) is not None:
            continue
        owner = schedule.owner(key)
        inside = block.rows[0] <= owner[0] < block.rows[1] and block.cols[0] <= owner[1] < block.cols[1]
        if owner == whole or inside:
            continue
        owner, batch = schedule.batch_of(key)
        foreign.update(zip(batch, _evaluate_batch(c, owner, batch, sam_window_px)))
    wanted = set(needed)
    return {key: logits for key, logits in foreign.items() if key in wanted}


def _evaluate_batch(c: BlockContext, owner, batch, sam_window_px):
    """(B, Q, h, w) logits of ``batch`` (crop keys) as the local run computes them in tile ``owner``."""
    row, col = c.plan.rows[owner[0]], c.plan.cols[owner[1]]
    rows_read, cols_read = read_extent(c.plan, row, col, sam_window_px)
    tic = time.perf_counter()
    image = padded_image(c.source, c.stretch, c.grid, c.working, rows_read, cols_read)
    c.timings["read"] += time.perf_counter() - tic
    prepare_window = getattr(c.method, "prepare_window", None)
    release_window = getattr(c.method, "release_window", None)
    if prepare_window is not None:
        prepare_window(torch.from_numpy(image), origin=(rows_read[0], cols_read[0]))
    try:
        o0, o1 = rows_read[0], cols_read[0]
        spans = [(*c.plan.row_spans[i], *c.plan.col_spans[j]) for i, j in batch]
        crops = np.stack([image[:, y0 - o0 : y1 - o0, x0 - o1 : x1 - o1] for y0, y1, x0, x1 in spans])
        logits = c.run(crops, [(y0 - o0, x0 - o1) for y0, _, x0, _ in spans])
    finally:
        if release_window is not None:
            release_window()
    c.done["evaluated"] += len(batch)
    return logits


def _score_tile(c: BlockContext, logits, valid, row, col, sink: BlockSink) -> None:
    """Upsample a tile's mean logits to output pixels strip by strip, score them and hand them on."""
    grid, working, timings = c.grid, c.working, c.timings
    (oy0, oy1), (ox0, ox1) = row.out, col.out
    col_sampling = output_sampling(ox0, ox1, grid.width, working.width)
    strip_rows = max(1, c.settings.score_pixels // (ox1 - ox0))
    for s0 in range(oy0, oy1, strip_rows):
        s1 = min(s0 + strip_rows, oy1)
        tic = time.perf_counter()
        row_sampling = output_sampling(s0, s1, grid.height, working.height)
        upsampled = resample_bilinear(logits, row_sampling, col_sampling, (row.needed[0], col.needed[0]))
        labels, conf = score(
            torch.from_numpy(upsampled), c.query_to_class, c.thresholds, c.logit_scale, c.kind
        )
        del upsampled
        labels, conf = labels.numpy(), conf.numpy()
        strip_valid = valid[s0 - oy0 : s1 - oy0]
        labels[~strip_valid] = 0
        timings["scoring"] += time.perf_counter() - tic
        tic = time.perf_counter()
        if c.with_confidence:
            conf[~strip_valid] = CONFIDENCE_NODATA
        sink.write(labels, conf if c.with_confidence else None, ox0, s0)
        timings["write"] += time.perf_counter() - tic


def padded_image(source, stretch, grid, working, rows: tuple[int, int], cols: tuple[int, int]):
    """(3, h, w) uint8 working image of ``rows`` × ``cols``; black past the raster's working extent
    (where padded edge crops reach, ``PipelineSettings.crop_edge == "pad"``)."""
    inside_rows = (rows[0], min(rows[1], working.height))
    inside_cols = (cols[0], min(cols[1], working.width))
    image = working_image(source, stretch, grid, working, inside_rows, inside_cols)
    pad_rows, pad_cols = rows[1] - inside_rows[1], cols[1] - inside_cols[1]
    if pad_rows or pad_cols:
        image = np.pad(image, ((0, 0), (0, pad_rows), (0, pad_cols)))
    return image


class WriterSink(BlockSink):
    """The local run's sink: straight into the output writers (engine.raster.writer)."""

    def __init__(self, classes, confidence=None) -> None:
        self.classes = classes
        self.confidence = confidence

    def write(self, labels, confidence, x, y) -> None:
        self.classes.write(labels, x, y)
        if self.confidence is not None and confidence is not None:
            self.confidence.write(confidence, x, y)


def context_for(
    prepared,
    vocabulary,
    method,
    settings,
    stretch,
    *,
    batch_size: int,
    thresholds: list[float],
    logit_scale: float,
    kind: str,
    cancel: CancelToken,
    progress: ProgressCallback,
    total_crops: int,
    on_runner: Callable[[CropRunner], None] | None = None,
) -> BlockContext:
    """A BlockContext for ``prepared`` (engine.pipeline.segment.PreparedRun) with a loaded ``method``
    whose queries are set."""
    run = CropRunner(method, batch_size, cancel)
    if on_runner is not None:
        on_runner(run)
    out = prepared.outputs.get("out")
    return BlockContext(
        source=prepared.source,
        stretch=stretch,
        grid=prepared.grid,
        working=prepared.working,
        plan=prepared.plan,
        method=method,
        run=run,
        query_to_class=vocabulary.query_to_class(),
        thresholds=thresholds,
        logit_scale=logit_scale,
        kind=kind,
        settings=settings,
        with_confidence="confidence" in prepared.outputs,
        spill_folder=Path(out).parent if out else None,
        cancel=cancel,
        progress=progress,
        total_crops=total_crops,
    )
