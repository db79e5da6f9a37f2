"""Geometry of the sliding window and of the read tiles. Pure integer/float arithmetic, no IO.

The crop grid is SegEarth-OV's (mmseg "slide" inference) laid over the WHOLE working raster:
along an axis of length L, n = max(L - crop + stride - 1, 0) // stride + 1 crops; crop i ends at
min(i·stride + crop, L) and starts at max(end - crop, 0), so the last crop is shifted back inside.
Overlapping crop logits are averaged.

The raster is processed in read tiles (a partition of the output grid) to bound memory. A tile averages
every crop that touches the working pixels its output pixels interpolate from, so each averaged logit,
and therefore each output pixel, is computed from exactly the same crops whatever the tile size. Crops
on tile borders are used by several tiles but evaluated once: ``crop_users`` tells which tiles use a
crop, so the pipeline keeps its logits (only the pixels later tiles need, ``kept_extent``) until the
last of them is done.

Resampling is bilinear at half-pixel centres (``engine.raster.bilinear``).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from engine.raster.bilinear import output_sampling


def crop_spans(length: int, crop: int, stride: int) -> list[tuple[int, int]]:
    """The (start, end) of every crop along an axis of ``length`` working pixels, in order."""
    count = max(length - crop + stride - 1, 0) // stride + 1
    spans = []
    for i in range(count):
        end = min(i * stride + crop, length)
        spans.append((max(end - crop, 0), end))
    return spans


@dataclass(frozen=True)
class AxisTile:
    """One tile's extent along one axis.

    ``out``: output pixels [start, stop); ``needed``: working pixels those interpolate from;
    ``crops``: indices [first, last) into the axis' crop spans touching ``needed``;
    ``region``: working pixels covered by those crops (the accumulation buffer).
    """

    out: tuple[int, int]
    needed: tuple[int, int]
    crops: tuple[int, int]
    region: tuple[int, int]

    @property
    def crop_count(self) -> int:
        return self.crops[1] - self.crops[0]


def padded_length(length: int, crop: int, stride: int) -> int:
    """Working pixels the crops cover when the last crop is padded at the raster edge instead of shifted
    back inside (ReSeg-CLIP's reference pads it with black): crops start at 0, stride, 2·stride, …"""
    count = -(-max(length - crop, 0) // stride) + 1
    return (count - 1) * stride + crop


def plan_axis(
    out_length: int,
    working_length: int,
    tile: int,
    crop: int,
    stride: int,
    span_length: int | None = None,
) -> tuple[list[AxisTile], list[tuple[int, int]]]:
    """Tiles of ``tile`` output pixels along an axis, and the axis' crop spans. ``span_length``: the
    crops' grid covers this many working pixels (≥ ``working_length``; past it the image is padded)."""
    spans = crop_spans(span_length or working_length, crop, stride)
    starts = [s for s, _ in spans]
    ends = [e for _, e in spans]
    tiles = []
    for o0 in range(0, out_length, tile):
        o1 = min(o0 + tile, out_length)
        sampling = output_sampling(o0, o1, out_length, working_length)
        n0, n1 = sampling.first, sampling.last + 1
        first = bisect.bisect_right(ends, n0)  # first crop whose end > n0
        last = bisect.bisect_left(starts, n1)  # crops with start < n1
        region = (min(starts[first:last]), max(ends[first:last]))
        tiles.append(AxisTile((o0, o1), (n0, n1), (first, last), region))
    return tiles, spans


@dataclass(frozen=True)
class TilePlan:
    """Tiles over a 2-D output grid: the product of the row-axis and column-axis tiles."""

    rows: list[AxisTile]
    cols: list[AxisTile]
    row_spans: list[tuple[int, int]]
    col_spans: list[tuple[int, int]]

    @property
    def tile_count(self) -> int:
        return len(self.rows) * len(self.cols)

    @property
    def crop_runs(self) -> int:
        """(tile, crop) uses in total: a crop on a tile border counts once per tile it touches."""
        return sum(t.crop_count for t in self.rows) * sum(t.crop_count for t in self.cols)

    @property
    def unique_crops(self) -> int:
        return len(self.row_spans) * len(self.col_spans)

    @property
    def crop_evaluations(self) -> int:
        """Crops evaluated when each crop a tile uses is evaluated once (and no tile is skipped)."""
        return _used_count(self.rows) * _used_count(self.cols)

    def tiles(self):
        """(row AxisTile, column AxisTile) pairs in row-major order."""
        for row in self.rows:
            for col in self.cols:
                yield row, col


def used_crop_indices(tiles: list[AxisTile]) -> set[int]:
    """Crop indices along an axis that some tile uses (each crop is evaluated once and kept)."""
    return {k for tile in tiles for k in range(*tile.crops)}


def _used_count(tiles: list[AxisTile]) -> int:
    return len(used_crop_indices(tiles))


def crop_users(tiles: list[AxisTile], crop_count: int) -> list[tuple[int, int] | None]:
    """Per crop index along an axis: (first, last) index of the tiles using it, inclusive; None if unused.

    Tiles' crop ranges are contiguous and move forward, so the users of a crop are contiguous too."""
    users: list[tuple[int, int] | None] = [None] * crop_count
    for t, tile in enumerate(tiles):
        for k in range(*tile.crops):
            first = users[k][0] if users[k] is not None else t
            users[k] = (first, t)
    return users


def kept_extent(span: tuple[int, int], tiles: list[AxisTile], later: range) -> tuple[int, int]:
    """Part of a crop ``span`` that the tiles ``later`` (indices along this axis) still need: the crop
    span cut to the hull of their ``needed`` pixels. Empty (start == stop) when ``later`` is empty."""
    if len(later) == 0:
        return span[0], span[0]
    start = max(span[0], tiles[later[0]].needed[0])
    stop = min(span[1], tiles[later[-1]].needed[1])
    return start, max(start, stop)


def aligned_extent(extent: tuple[int, int], piece: int, length: int) -> tuple[int, int]:
    """``extent`` widened to multiples of ``piece`` (a global grid from 0), cut to [0, length)."""
    start = extent[0] // piece * piece
    stop = min(-(-extent[1] // piece) * piece, length)
    return start, stop


def output_tile_size(tile_working: int, scale: float, max_output_tile: int) -> int:
    """Output pixels per tile side so that a tile spans about ``tile_working`` working pixels."""
    return int(min(max(math.floor(tile_working * scale), 16), max_output_tile))


def plan_tiles(
    out_width: int,
    out_height: int,
    working_width: int,
    working_height: int,
    crop: int,
    stride: int,
    tile_working: int,
    max_output_tile: int,
    pad_edges: bool = False,
) -> TilePlan:
    """Tiles and crops over the output grid; ``pad_edges``: crops past the raster edge are padded
    (``padded_length``) instead of the last one being shifted back inside."""
    tile_x = output_tile_size(tile_working, out_width / working_width, max_output_tile)
    tile_y = output_tile_size(tile_working, out_height / working_height, max_output_tile)
    span_h = padded_length(working_height, crop, stride) if pad_edges else None
    span_w = padded_length(working_width, crop, stride) if pad_edges else None
    rows, row_spans = plan_axis(out_height, working_height, tile_y, crop, stride, span_h)
    cols, col_spans = plan_axis(out_width, working_width, tile_x, crop, stride, span_w)
    return TilePlan(rows, cols, row_spans, col_spans)
