"""Crop logits for one read tile: evaluate the method in batches, keep what later tiles reuse, average.

Every crop of the global crop grid is evaluated exactly once: the part of a crop's logits that later
tiles need is kept (``CropStore``) and reused instead of recomputed. Within a tile, crop logits are
added in global row-major order whether fresh or kept, so each pixel gets the same float sums whatever
the tile size.
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.pipeline.progress import CancelToken
from engine.pipeline.spill_file import Parked, SpillFile
from engine.pipeline.tiling import TilePlan, crop_users, kept_extent
from engine.runtime.device import is_out_of_memory
from engine.runtime.mapped_arrays import mapped_copy, mapped_zeros

log = logging.getLogger(__name__)


def accepts_origins(method) -> bool:
    """Whether ``method.crop_logits`` takes ``origins`` (each crop's place in the prepared window)."""
    try:
        return "origins" in inspect.signature(method.crop_logits).parameters
    except (TypeError, ValueError):
        return False


class CropRunner:
    """Runs crops through the method in batches; halves the batch on a GPU out-of-memory error."""

    def __init__(self, method, batch_size: int, cancel: CancelToken) -> None:
        self.method = method
        self.batch_size = batch_size
        self.cancel = cancel
        self.batches = 0
        self.seconds = 0.0
        self.pass_origins = accepts_origins(method)

    def __call__(self, crops: np.ndarray, origins: list[tuple[int, int]] | None = None) -> np.ndarray:
        """(B, 3, h, w) uint8 → (B, Q, h, w) float32 numpy. ``origins``: each crop's (row, col) in the
        tile's working image, handed on to methods whose ``crop_logits`` accepts them."""
        if origins is not None and len(origins) != len(crops):
            raise ValueError(f"{len(origins)} origins for {len(crops)} crops")
        outputs = []
        start = 0
        while start < len(crops):
            self.cancel.check()
            # Crops and origins are sliced with the same bounds, also after a batch-halving retry.
            stop = start + self.batch_size
            chunk = torch.from_numpy(np.ascontiguousarray(crops[start:stop]))
            began = time.perf_counter()
            try:
                with torch.inference_mode():
                    if self.pass_origins and origins is not None:
                        logits = self.method.crop_logits(chunk, origins=list(origins[start:stop]))
                    else:
                        logits = self.method.crop_logits(chunk)
            except RuntimeError as exc:
                if is_out_of_memory(exc) and self.batch_size > 1:
                    torch.cuda.empty_cache() if torch.cuda.is_available() else None
                    self.batch_size = max(1, self.batch_size // 2)
                    log.warning("out of memory: retrying with %d crops per batch", self.batch_size)
                    continue
                raise
            self.seconds += time.perf_counter() - began
            self.batches += 1
            outputs.append(logits.detach().to("cpu", torch.float32).numpy())
            start += len(chunk)
        return np.concatenate(outputs)


@dataclass
class KeptCrop:
    """Logits of an evaluated crop kept for later tiles: (Q, h, w) float32 at working (row, col)
    ``origin``, cut to the pixels later tiles need; dropped after ``last_tile`` (row, col). Held in
    memory (``logits``) or parked in the store's spill file (``parked``)."""

    origin: tuple[int, int]
    logits: np.ndarray | None  # None when parked, or when only counting (see count_crop_evaluations)
    last_tile: tuple[int, int]
    nbytes: int
    parked: Parked | None = None
    spilled: bool = False


class CropStore:
    """Evaluated crop logits that later tiles reuse, so every crop is evaluated exactly once.

    Tiles run in row-major order, so a crop is kept while a later tile in its tile row, or a tile in a
    later tile row, uses it; only the pixels those tiles need are kept. Bound: the crops shared with the
    next tile row across the whole raster width (about crop/stride + 1 crop rows, cut to the rows the
    next tile row needs) plus those shared with the next tile of the current row, × Q × 4 bytes per pixel.
    For SegEarth-OV (crop 224, stride 112) that is roughly Q × (needed rows shared, ≤ ~340) × 2 × working
    width × 4 bytes: it grows with the raster's width (one row of tiles), never with its height.

    ``budget`` caps the memory held for later tile rows, so memory stays flat whatever the width. Past
    it, crops go to a temporary file in ``spill_folder`` (up to ``spill_budget`` bytes; created on the
    first such crop) and are read back when their tiles come; past that too, or when the file cannot be
    written, the next row evaluates them again. What the next tile of the same row needs is always
    kept: it is bounded by the tile size."""

    def __init__(
        self,
        plan: TilePlan,
        budget: int | None = None,
        spill_budget: int = 0,
        spill_folder: Path | str | None = None,
    ) -> None:
        self.plan = plan
        self.budget = budget
        self.spill_budget = spill_budget
        self.spill_folder = spill_folder
        self.row_users = crop_users(plan.rows, len(plan.row_spans))
        self.col_users = crop_users(plan.cols, len(plan.col_spans))
        self.kept: dict[tuple[int, int], KeptCrop] = {}
        self.bytes = 0
        self.peak_bytes = 0
        self.spilled_bytes = 0
        self.peak_spilled_bytes = 0
        self.spilled_crops = 0
        self._spill: SpillFile | None = None
        self._spill_failed = False

    def get(self, key: tuple[int, int]) -> KeptCrop | None:
        return self.kept.get(key)

    def logits_of(self, kept: KeptCrop) -> np.ndarray:
        """The kept crop's logits, read back from the spill file when parked there."""
        return kept.logits if kept.parked is None else self._spill.fetch(kept.parked)

    def keep(
        self, key: tuple[int, int], logits: np.ndarray | None, tile: tuple[int, int], queries: int = 0
    ) -> None:
        """Keep what later tiles need of crop ``key`` = (i, j) evaluated in ``tile`` = (r, c). With
        ``logits`` None only the bookkeeping is done, for ``queries`` logit channels."""
        (i, j), (r, c) = key, tile
        (_, r_last), (c_first, c_last) = self.row_users[i], self.col_users[j]
        later_rows = r < r_last
        later_in_row = c < c_last
        if not (later_rows or later_in_row):
            return
        channels = queries if logits is None else logits.shape[0]
        window = self._kept_window(key, r, r_last, c, c_first, c_last, later_rows, later_in_row)
        nbytes = _window_bytes(window, channels)
        if later_rows and self.budget is not None and self.bytes + nbytes > self.budget:
            if self._spilled(key, logits, window, nbytes, (r_last, c_last)):
                return
            if not later_in_row:
                return  # the next tile row evaluates it again
            r_last, later_rows = r, False  # keep it for the rest of this tile row only
            window = self._kept_window(key, r, r_last, c, c_first, c_last, later_rows, later_in_row)
            nbytes = _window_bytes(window, channels)
        ky0, ky1, kx0, kx1 = window
        part = None
        if logits is not None:
            (y0, _), (x0, _) = self.plan.row_spans[i], self.plan.col_spans[j]
            # A copy (frees the batch) outside the heap: it outlives many tensors (runtime.mapped_arrays).
            part = mapped_copy(logits[:, ky0 - y0 : ky1 - y0, kx0 - x0 : kx1 - x0])
        self.kept[key] = KeptCrop((ky0, kx0), part, (r_last, c_last), nbytes)
        self.bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def _kept_window(self, key, r, r_last, c, c_first, c_last, later_rows, later_in_row):
        """(y0, y1, x0, x1): the pixels of crop ``key`` that tiles after (r, c) up to row ``r_last`` need."""
        i, j = key
        rows = range(r if later_in_row else r + 1, r_last + 1)
        cols = range(c_first if later_rows else c + 1, c_last + 1)
        ky0, ky1 = kept_extent(self.plan.row_spans[i], self.plan.rows, rows)
        kx0, kx1 = kept_extent(self.plan.col_spans[j], self.plan.cols, cols)
        return ky0, ky1, kx0, kx1

    def _spilled(self, key, logits, window, nbytes: int, last_tile) -> bool:
        """Park crop ``key``'s ``window`` in the spill file if its budget allows; whether it was."""
        if self._spill_failed or self.spilled_bytes + nbytes > self.spill_budget:
            return False
        ky0, ky1, kx0, kx1 = window
        parked = None
        if logits is not None:
            (y0, _), (x0, _) = self.plan.row_spans[key[0]], self.plan.col_spans[key[1]]
            try:
                if self._spill is None:
                    self._spill = SpillFile(self.spill_folder)
                parked = self._spill.park(logits[:, ky0 - y0 : ky1 - y0, kx0 - x0 : kx1 - x0])
            except OSError as error:
                # Disk full or folder unwritable: the next tile row evaluates such crops again.
                log.warning("cannot park crop logits in a temporary file (%s); evaluating them again", error)
                self._spill_failed = True
                return False
        self.kept[key] = KeptCrop((ky0, kx0), None, last_tile, nbytes, parked, spilled=True)
        self.spilled_bytes += nbytes
        self.spilled_crops += 1
        self.peak_spilled_bytes = max(self.peak_spilled_bytes, self.spilled_bytes)
        return True

    def finish_tile(self, tile: tuple[int, int]) -> None:
        """Drop the crops whose last user is ``tile`` (or an earlier tile, when tiles were skipped)."""
        for key in [k for k, kept in self.kept.items() if kept.last_tile <= tile]:
            kept = self.kept.pop(key)
            if not kept.spilled:
                self.bytes -= kept.nbytes
                continue
            self.spilled_bytes -= kept.nbytes
            if kept.parked is not None:
                self._spill.release(kept.parked)

    def close(self) -> None:
        """Delete the spill file, if one was made (the store keeps nothing after this)."""
        self.kept.clear()
        if self._spill is not None:
            self._spill.close()
            self._spill = None


def _window_bytes(window: tuple[int, int, int, int], channels: int) -> int:
    y0, y1, x0, x1 = window
    return channels * (y1 - y0) * (x1 - x0) * np.dtype(np.float32).itemsize


def count_crop_evaluations(plan: TilePlan, budget: int | None, queries: int, spill_budget: int = 0) -> int:
    """Crop evaluations of a run over every tile of ``plan`` with ``queries`` logit channels: each crop a
    tile uses, plus those evaluated again because neither the kept-logits ``budget`` nor the
    ``spill_budget`` could hold them for the next tile row (very wide rasters). The pipeline's own
    bookkeeping, without logits (assuming the spill file can be written)."""
    store = CropStore(plan, budget, spill_budget)
    evaluated = 0
    for r, row in enumerate(plan.rows):
        for c, col in enumerate(plan.cols):
            for key in tile_crops(row, col):
                if store.get(key) is None:
                    evaluated += 1
                    store.keep(key, None, (r, c), queries)
            store.finish_tile((r, c))
    return evaluated


def tile_crops(row, col) -> list[tuple[int, int]]:
    """(row, col) crop indices a tile uses, in global row-major order."""
    return [(i, j) for i in range(*row.crops) for j in range(*col.crops)]


def average_tile_logits(image, image_origin, tile, plan: TilePlan, run, store: CropStore, on_batch):
    """Mean logits (Q, h, w) over the tile's needed working pixels, from every crop touching them.

    ``image`` (3, H, W) is the tile's working image with its top-left at working ``image_origin``; it
    covers the tile's ``region``. Crops kept by ``store`` are reused, the others are evaluated (the
    origin handed to the method is the crop's (row, col) inside ``image``) and kept when later tiles
    need them. Crop logits are added in global row-major order in every tile, reused or not: the same
    float sums whatever the tile size."""
    row, col = plan.rows[tile[0]], plan.cols[tile[1]]
    r_off, c_off = row.region[0], col.region[0]
    order = tile_crops(row, col)
    position = {key: n for n, key in enumerate(order)}
    fresh_keys = [key for key in order if store.get(key) is None]
    total = count = None
    added = 0

    def add(origin: tuple[int, int], logits: np.ndarray, span: tuple[int, int, int, int]) -> None:
        nonlocal total, count
        if total is None:
            total = mapped_zeros((logits.shape[0], row.region[1] - r_off, col.region[1] - c_off), np.float32)
            count = mapped_zeros(total.shape[1:], np.float32)
        y0, x0 = origin[0] - r_off, origin[1] - c_off
        total[:, y0 : y0 + logits.shape[1], x0 : x0 + logits.shape[2]] += logits
        count[span[0] - r_off : span[1] - r_off, span[2] - c_off : span[3] - c_off] += 1.0

    def add_until(stop: int, fresh: dict) -> None:
        nonlocal added
        for key in order[added:stop]:
            span = (*plan.row_spans[key[0]], *plan.col_spans[key[1]])
            if key in fresh:
                add((span[0], span[2]), fresh[key], span)
            else:
                kept = store.get(key)
                add(kept.origin, store.logits_of(kept), span)
        added = max(added, stop)

    step = max(1, run.batch_size)
    for start in range(0, len(fresh_keys), step):
        keys = fresh_keys[start : start + step]
        spans = [(*plan.row_spans[i], *plan.col_spans[j]) for i, j in keys]
        o0, o1 = image_origin
        crops = np.stack([image[:, y0 - o0 : y1 - o0, x0 - o1 : x1 - o1] for y0, y1, x0, x1 in spans])
        logits = run(crops, [(y0 - o0, x0 - o1) for y0, _, x0, _ in spans])
        fresh = dict(zip(keys, logits))
        add_until(position[keys[-1]] + 1, fresh)
        for key, crop_logits in fresh.items():
            store.keep(key, crop_logits, tile)
        on_batch(len(logits))
    add_until(len(order), {})
    n0, n1 = row.needed[0] - r_off, row.needed[1] - r_off
    m0, m1 = col.needed[0] - c_off, col.needed[1] - c_off
    return np.divide(
        total[:, n0:n1, m0:m1],
        count[n0:n1, m0:m1],
        out=mapped_zeros((len(total), n1 - n0, m1 - m0), np.float32),
    )
