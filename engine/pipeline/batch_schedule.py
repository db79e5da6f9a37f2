"""The whole run's crop batches, so that a block evaluates every crop in the batch the local run does.

A model's output for a crop can depend, in the last bits, on the batch it runs in (its size: matrix
kernels block differently). The local run evaluates each crop in its OWNER tile, the first tile in
row-major order that uses it and has valid pixels, batched with the owner's other fresh crops in
row-major order, ``batch_size`` at a time. A block reproduces that: a crop whose owner lies outside the
block is evaluated with the owner's whole batch, on the owner tile's image (a halo read at block borders
only). The schedule depends only on the plan, the batch size and which tiles have no valid pixels, all
fixed by the input; it matches the local run as long as the kept-logits budgets hold every shared crop
(memory, then the spill file: rasters over ~8 GB of kept logits a tile row re-evaluate crops).
"""

from __future__ import annotations

from collections.abc import Callable

from engine.pipeline.crop_logits import KeptCrop, tile_crops
from engine.pipeline.tiling import TilePlan, crop_users

Tile = tuple[int, int]
Key = tuple[int, int]


class BatchSchedule:
    """Owner tiles and batches of the run's crops. ``skipped(tile)``: whether a (global) tile has no
    valid pixel (read lazily, only for tiles around a block); ``known`` seeds it."""

    def __init__(self, plan: TilePlan, batch_size: int, skipped: Callable[[Tile], bool]) -> None:
        self.plan = plan
        self.batch_size = max(1, int(batch_size))
        self._skipped = skipped
        self.known: dict[Tile, bool] = {}
        self.row_users = crop_users(plan.rows, len(plan.row_spans))
        self.col_users = crop_users(plan.cols, len(plan.col_spans))
        self._fresh: dict[Tile, list[Key]] = {}

    def is_skipped(self, tile: Tile) -> bool:
        if tile not in self.known:
            self.known[tile] = bool(self._skipped(tile))
        return self.known[tile]

    def owner(self, key: Key) -> Tile | None:
        """The first tile (row-major) using crop ``key`` that has valid pixels; None if none has."""
        (r0, r1), (c0, c1) = self.row_users[key[0]], self.col_users[key[1]]
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                if not self.is_skipped((r, c)):
                    return (r, c)
        return None

    def fresh(self, tile: Tile) -> list[Key]:
        """Crops ``tile`` evaluates in the local run (those it owns), in row-major order."""
        if tile not in self._fresh:
            row, col = self.plan.rows[tile[0]], self.plan.cols[tile[1]]
            self._fresh[tile] = [key for key in tile_crops(row, col) if self.owner(key) == tile]
        return self._fresh[tile]

    def batch_of(self, key: Key) -> tuple[Tile, list[Key]]:
        """The owner tile of ``key`` and the batch the local run evaluates it in."""
        owner = self.owner(key)
        fresh = self.fresh(owner)
        start = fresh.index(key) // self.batch_size * self.batch_size
        return owner, fresh[start : start + self.batch_size]


class WithForeign:
    """A CropStore seen by one tile, plus crops evaluated for it in their owners' batches (full crops)."""

    def __init__(self, store, foreign: dict, plan: TilePlan) -> None:
        self.store = store
        self.foreign = foreign
        self.plan = plan

    def get(self, key: Key):
        if key in self.foreign:
            (y0, _), (x0, _) = self.plan.row_spans[key[0]], self.plan.col_spans[key[1]]
            return KeptCrop((y0, x0), self.foreign[key], (0, 0), 0)
        return self.store.get(key)

    def logits_of(self, kept):
        return kept.logits if kept.parked is None and kept.logits is not None else self.store.logits_of(kept)

    def keep(self, key, logits, tile, queries: int = 0) -> None:
        self.store.keep(key, logits, tile, queries)
