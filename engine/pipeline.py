"""Raster in, raster out: ties raster IO, tiling, a method and scoring together.

Flow per run (see engine/tiling.py for the geometry): open the source and fix the requested grid
(``prepare``, no model needed; also used by ``estimate``), compute the 8-bit stretch once, then for
each read tile: resample the source to the working grid, run every crop touching the tile through the
method in batches, average overlapping crop logits, resize them bilinearly to the output pixels, score
(× logit scale, softmax, max over synonyms, argmax, threshold) and write labels (and confidence).
Outputs are temporary files until the run succeeds; cancellation and errors leave nothing behind.
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine import __version__
from engine.device import choose_batch_size, is_out_of_memory, peak_memory
from engine.errors import UserError
from engine.progress import CancelToken, ProgressCallback, ProgressEvent, ignore_progress
from engine.raster import grid as grids
from engine.raster.reader import RasterSource, parse_bands
from engine.raster.sampling import working_image
from engine.raster.sidecar import write_sidecar
from engine.raster.stretch import compute_stretch
from engine.raster.writer import (
    CONFIDENCE_NODATA,
    AtomicFiles,
    ClassRasterWriter,
    ConfidenceRasterWriter,
    check_output_path,
    sidecar_path,
)
from engine.scoring import ScoringSettings, score
from engine.tiling import (
    TilePlan,
    aligned_extent,
    crop_users,
    kept_extent,
    output_sampling,
    plan_tiles,
    resample_bilinear,
)
from engine.vocabulary import Vocabulary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentRequest:
    """What to segment and where to write it (the CLI's options, minus vocabulary and model)."""

    input: str
    out: str | None = None  # None only for estimates
    confidence: str | None = None
    bands: tuple[int, ...] | str | None = None  # "3,2,1" or (3, 2, 1); None: R/G/B bands, else 1-2-3
    bbox: str | tuple[float, float, float, float] | None = None  # minx,miny,maxx,maxy
    bbox_crs: str | None = None  # default: the raster's CRS
    gsd: float | None = None  # working metres per pixel; None: native × grids.DEFAULT_GSD_FACTOR
    threshold: float = ScoringSettings.threshold
    overwrite: bool = False


@dataclass(frozen=True)
class PipelineSettings:
    # Working pixels per read-tile side; memory scales with its square × the number of queries.
    tile_working: int = 896
    # Cap on output pixels per tile side (matters when the working grid is much coarser than the raster).
    max_output_tile: int = 4096
    # Output rows scored at once (bounds the Q × rows × width upsampled-logit buffer).
    score_rows: int = 256
    # Crops per model call; None adapts to the device's free memory.
    batch_size: int | None = None
    # Multiplier on the logits before the softmax; None: the method's ``logit_scale`` attribute when it
    # has one (ReSeg-CLIP: 1, raw cosines), else SegEarth-OV's 50.
    logit_scale: float | None = None


@dataclass
class PreparedRun:
    """A validated request: source opened, grids fixed, tiles planned, outputs checked."""

    request: SegmentRequest
    source: RasterSource
    grid: grids.OutputGrid
    working: grids.WorkingGrid
    plan: TilePlan
    crop_size: int
    crop_stride: int
    outputs: dict[str, Path] = field(default_factory=dict)  # "out" / "confidence" / "sidecar"
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "input": self.source.path,
            "output_size": [self.grid.width, self.grid.height],
            "window": asdict(self.grid.window),
            "native_gsd": list(self.grid.native_gsd),
            "georeferenced": self.grid.georeferenced,
            "working_size": [self.working.width, self.working.height],
            "working_gsd": self.working.gsd,
            "pixels": self.grid.width * self.grid.height,
            "working_pixels": self.working.width * self.working.height,
            "tiles": self.plan.tile_count,
            "crops": self.plan.unique_crops,
            "crop_evaluations": self.plan.crop_evaluations,
            "warnings": list(self.warnings),
        }


@dataclass
class SegmentResult:
    out: str
    confidence: str | None
    sidecar: str
    record: dict


def _threshold(value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise UserError(f"bad --threshold {value}: use a probability between 0 and 1")
    return float(value)


def prepare(
    request: SegmentRequest,
    crop_size: int = 224,
    crop_stride: int = 112,
    settings: PipelineSettings | None = None,
    check_outputs: bool = True,
) -> PreparedRun:
    """Validate everything a user can get wrong before any model is loaded or file written."""
    settings = settings or PipelineSettings()
    _threshold(request.threshold)
    bands = parse_bands(request.bands) if not isinstance(request.bands, tuple) else request.bands
    warnings: list[str] = []
    outputs: dict[str, Path] = {}
    if check_outputs:
        if not request.out:
            raise UserError("no output given: pass --out OUT.tif")
        outputs["out"] = check_output_path(request.out, request.overwrite)
        outputs["sidecar"] = check_output_path(sidecar_path(outputs["out"]), request.overwrite, "sidecar")
        if request.confidence:
            outputs["confidence"] = check_output_path(
                request.confidence, request.overwrite, "confidence output"
            )
        if len(set(outputs.values())) != len(outputs):
            raise UserError("the class raster, confidence raster and sidecar must be different files")
    source = RasterSource(request.input, parse_bands(bands) if isinstance(bands, str) else bands)
    try:
        size = (source.width, source.height)
        if not source.georeferenced:
            warnings.append(
                f"{source.path} has no georeferencing: output in pixel space, --gsd in source pixels"
            )
        window = grids.PixelWindow(0, 0, *size)
        if request.bbox is not None:
            if not source.georeferenced and request.bbox_crs:
                raise UserError("--bbox-crs needs a georeferenced raster; without one give --bbox in pixels")
            window, clipped = grids.window_from_bbox(
                source.geotransform, source.projection_wkt, size, request.bbox, request.bbox_crs
            )
            if clipped:
                warnings.append("--bbox extends beyond the raster: it was cut to the raster's extent")
        grid = grids.output_grid(
            source.geotransform, source.projection_wkt, source.georeferenced, size, window
        )
        working = grids.working_grid(grid, request.gsd)
        plan = _plan(grid, working, crop_size, crop_stride, settings)
    except Exception:
        source.close()
        raise
    for message in warnings:
        log.warning(message)
    return PreparedRun(request, source, grid, working, plan, crop_size, crop_stride, outputs, warnings)


def _plan(grid, working, crop_size: int, crop_stride: int, settings: PipelineSettings) -> TilePlan:
    return plan_tiles(
        grid.width,
        grid.height,
        working.width,
        working.height,
        crop_size,
        crop_stride,
        settings.tile_working,
        settings.max_output_tile,
    )


def estimate(request: SegmentRequest, crop_size: int = 224, crop_stride: int = 112, settings=None) -> dict:
    """Sizes, tiles and crops a run would process, without loading a model or writing anything."""
    prepared = prepare(request, crop_size, crop_stride, settings, check_outputs=False)
    try:
        return prepared.summary()
    finally:
        prepared.source.close()


def accepts_origins(method) -> bool:
    """Whether ``method.crop_logits`` takes ``origins`` (each crop's place in the prepared window)."""
    try:
        return "origins" in inspect.signature(method.crop_logits).parameters
    except (TypeError, ValueError):
        return False


class _CropRunner:
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
class _KeptCrop:
    """Logits of an evaluated crop kept for later tiles: (Q, h, w) float32 at working (row, col)
    ``origin``, cut to the pixels later tiles need; dropped after ``last_tile`` (row, col)."""

    origin: tuple[int, int]
    logits: np.ndarray
    last_tile: tuple[int, int]


class _CropStore:
    """Evaluated crop logits that later tiles reuse, so every crop is evaluated exactly once.

    Tiles run in row-major order, so a crop is kept while a later tile in its tile row, or a tile in a
    later tile row, uses it; only the pixels those tiles need are kept. Bound: the crops shared with the
    next tile row across the whole raster width (about crop/stride + 1 crop rows, cut to the rows the
    next tile row needs) plus those shared with the next tile of the current row, × Q × 4 bytes per pixel.
    For SegEarth-OV (crop 224, stride 112) that is roughly Q × (needed rows shared, ≤ ~340) × 2 × working
    width × 4 bytes: it grows with the raster's width (one row of tiles), never with its height."""

    def __init__(self, plan: TilePlan) -> None:
        self.plan = plan
        self.row_users = crop_users(plan.rows, len(plan.row_spans))
        self.col_users = crop_users(plan.cols, len(plan.col_spans))
        self.kept: dict[tuple[int, int], _KeptCrop] = {}
        self.bytes = 0
        self.peak_bytes = 0

    def get(self, key: tuple[int, int]) -> _KeptCrop | None:
        return self.kept.get(key)

    def keep(self, key: tuple[int, int], logits: np.ndarray, tile: tuple[int, int]) -> None:
        """Keep what later tiles need of crop ``key`` = (i, j) evaluated in ``tile`` = (r, c)."""
        (i, j), (r, c) = key, tile
        (_, r_last), (c_first, c_last) = self.row_users[i], self.col_users[j]
        later_rows = r < r_last
        later_in_row = c < c_last
        if not (later_rows or later_in_row):
            return
        rows = range(r if later_in_row else r + 1, r_last + 1)
        cols = range(c_first if later_rows else c + 1, c_last + 1)
        (y0, _), (x0, _) = self.plan.row_spans[i], self.plan.col_spans[j]
        ky0, ky1 = kept_extent(self.plan.row_spans[i], self.plan.rows, rows)
        kx0, kx1 = kept_extent(self.plan.col_spans[j], self.plan.cols, cols)
        part = np.array(logits[:, ky0 - y0 : ky1 - y0, kx0 - x0 : kx1 - x0])  # a copy: frees the batch
        self.kept[key] = _KeptCrop((ky0, kx0), part, (r_last, c_last))
        self.bytes += part.nbytes
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def finish_tile(self, tile: tuple[int, int]) -> None:
        """Drop the crops whose last user is ``tile`` (or an earlier tile, when tiles were skipped)."""
        for key in [k for k, kept in self.kept.items() if kept.last_tile <= tile]:
            self.bytes -= self.kept.pop(key).logits.nbytes


def _tile_crops(row, col) -> list[tuple[int, int]]:
    """(row, col) crop indices a tile uses, in global row-major order."""
    return [(i, j) for i in range(*row.crops) for j in range(*col.crops)]


def _average_logits(image, image_origin, tile, plan: TilePlan, run, store: _CropStore, on_batch):
    """Mean logits (Q, h, w) over the tile's needed working pixels, from every crop touching them.

    ``image`` (3, H, W) is the tile's working image with its top-left at working ``image_origin``; it
    covers the tile's ``region``. Crops kept by ``store`` are reused, the others are evaluated (the
    origin handed to the method is the crop's (row, col) inside ``image``) and kept when later tiles
    need them. Crop logits are added in global row-major order in every tile, reused or not: the same
    float sums whatever the tile size."""
    row, col = plan.rows[tile[0]], plan.cols[tile[1]]
    r_off, c_off = row.region[0], col.region[0]
    order = _tile_crops(row, col)
    position = {key: n for n, key in enumerate(order)}
    fresh_keys = [key for key in order if store.get(key) is None]
    total = count = None
    added = 0

    def add(origin: tuple[int, int], logits: np.ndarray, span: tuple[int, int, int, int]) -> None:
        nonlocal total, count
        if total is None:
            total = np.zeros((logits.shape[0], row.region[1] - r_off, col.region[1] - c_off), np.float32)
            count = np.zeros(total.shape[1:], np.float32)
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
                add(kept.origin, kept.logits, span)
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
    return total[:, n0:n1, m0:m1] / count[n0:n1, m0:m1]


def effective_logit_scale(method, settings: PipelineSettings) -> float:
    """The logit scale used for scoring: the settings', else the method's, else 50 (SegEarth-OV)."""
    if settings.logit_scale is not None:
        return float(settings.logit_scale)
    return float(getattr(method, "logit_scale", ScoringSettings.logit_scale))


def segment(
    prepared: PreparedRun,
    vocabulary: Vocabulary,
    method,
    *,
    settings: PipelineSettings | None = None,
    device: str = "cpu",
    progress: ProgressCallback = ignore_progress,
    cancel: CancelToken | None = None,
    record: dict | None = None,
) -> SegmentResult:
    """Segment ``prepared`` with ``method`` (a DenseMethod); writes the outputs and the JSON sidecar.

    ``record`` is merged into the sidecar (the caller's model options, load timings, ...).
    Raises ``engine.errors.Cancelled`` when ``cancel`` fires; no output is left behind then.
    """
    settings = settings or PipelineSettings()
    cancel = cancel or CancelToken()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    request, source, grid, working, plan = (
        prepared.request,
        prepared.source,
        prepared.grid,
        prepared.working,
        prepared.plan,
    )
    if (method.crop_size, method.crop_stride) != (prepared.crop_size, prepared.crop_stride):
        plan = prepared.plan = _plan(grid, working, method.crop_size, method.crop_stride, settings)
        prepared.crop_size, prepared.crop_stride = method.crop_size, method.crop_stride
    thresholds = vocabulary.thresholds(_threshold(request.threshold))
    logit_scale = effective_logit_scale(method, settings)
    query_to_class = vocabulary.query_to_class()
    files = AtomicFiles()
    writers = []
    progress(ProgressEvent(0.0, "statistics", "computing the 8-bit stretch"))
    tic = time.perf_counter()
    stretch = compute_stretch(source, grid.window)
    timings["statistics"] = time.perf_counter() - tic
    tic = time.perf_counter()
    method.set_queries(vocabulary.queries())
    timings["text"] = time.perf_counter() - tic
    bytes_per_crop = getattr(method, "bytes_per_crop", None)
    run = _CropRunner(method, choose_batch_size(device, bytes_per_crop, settings.batch_size), cancel)
    done = {"crops": 0, "tiles": 0, "skipped": 0, "evaluated": 0}
    total_crops = max(1, plan.crop_evaluations)
    store = _CropStore(plan)

    prepare_window = getattr(method, "prepare_window", None)
    release_window = getattr(method, "release_window", None)
    # ReSeg-CLIP cuts SAM windows on a global grid of this many working pixels: read windows widened to
    # that grid hold every SAM window whole, so a crop's segments never depend on the tile it runs in.
    sam_window_px = getattr(method, "sam_window_px", None) if prepare_window is not None else None

    def _fraction() -> float:
        return min(0.02 + 0.96 * done["crops"] / total_crops, 0.98)

    def on_batch(n: int) -> None:
        done["crops"] += n
        done["evaluated"] += n
        progress(ProgressEvent(_fraction(), "inference", f"tile {done['tiles'] + 1}/{plan.tile_count}"))

    try:
        out_path = prepared.outputs["out"]
        classes = ClassRasterWriter(files.temporary_for(out_path), grid, vocabulary)
        writers.append(classes)
        confidence = None
        if "confidence" in prepared.outputs:
            confidence = ConfidenceRasterWriter(files.temporary_for(prepared.outputs["confidence"]), grid)
            writers.append(confidence)
        sidecar_temp = files.temporary_for(prepared.outputs["sidecar"])
        timings.update(read=0.0, scoring=0.0, write=0.0)
        if prepare_window is not None:
            timings["prepare_window"] = 0.0
        for tile in ((r, c) for r in range(len(plan.rows)) for c in range(len(plan.cols))):
            row, col = plan.rows[tile[0]], plan.cols[tile[1]]
            cancel.check()
            (oy0, oy1), (ox0, ox1) = row.out, col.out
            tic = time.perf_counter()
            _data, valid = source.read(grid.window.xoff + ox0, grid.window.yoff + oy0, ox1 - ox0, oy1 - oy0)
            if not valid.any():
                # Nothing to classify: the crops touching this tile only matter for its own pixels.
                done["skipped"] += 1
                done["crops"] += sum(store.get(key) is None for key in _tile_crops(row, col))
                store.finish_tile(tile)
                labels = np.zeros(valid.shape, np.uint8)
                classes.write(labels, ox0, oy0)
                if confidence is not None:
                    confidence.write(np.full(valid.shape, CONFIDENCE_NODATA, np.float32), ox0, oy0)
                done["tiles"] += 1
                continue
            rows_read, cols_read = row.region, col.region
            if sam_window_px:
                rows_read = aligned_extent(row.region, int(sam_window_px), working.height)
                cols_read = aligned_extent(col.region, int(sam_window_px), working.width)
            image = working_image(source, stretch, grid, working, rows_read, cols_read)
            timings["read"] += time.perf_counter() - tic
            if prepare_window is not None:
                # Window-level preparation (ReSeg-CLIP: SAM masks); the origin puts the window in the
                # working raster so its SAM windows fall on one global grid and are cached.
                progress(ProgressEvent(_fraction(), "masks", f"tile {done['tiles'] + 1}/{plan.tile_count}"))
                tic = time.perf_counter()
                prepare_window(torch.from_numpy(image), origin=(rows_read[0], cols_read[0]))
                timings["prepare_window"] += time.perf_counter() - tic
            try:
                logits = _average_logits(
                    image, (rows_read[0], cols_read[0]), tile, plan, run, store, on_batch
                )
            finally:
                if release_window is not None:
                    release_window()
            store.finish_tile(tile)
            del image
            col_sampling = output_sampling(ox0, ox1, grid.width, working.width)
            for s0 in range(oy0, oy1, settings.score_rows):
                s1 = min(s0 + settings.score_rows, oy1)
                tic = time.perf_counter()
                row_sampling = output_sampling(s0, s1, grid.height, working.height)
                upsampled = resample_bilinear(
                    logits, row_sampling, col_sampling, (row.needed[0], col.needed[0])
                )
                labels, conf = score(torch.from_numpy(upsampled), query_to_class, thresholds, logit_scale)
                labels, conf = labels.numpy(), conf.numpy()
                strip_valid = valid[s0 - oy0 : s1 - oy0]
                labels[~strip_valid] = 0
                timings["scoring"] += time.perf_counter() - tic
                tic = time.perf_counter()
                classes.write(labels, ox0, s0)
                if confidence is not None:
                    conf[~strip_valid] = CONFIDENCE_NODATA
                    confidence.write(conf, ox0, s0)
                timings["write"] += time.perf_counter() - tic
            done["tiles"] += 1
        cancel.check()
        progress(ProgressEvent(0.99, "write", "finishing the outputs"))
        tic = time.perf_counter()
        for writer in writers:
            writer.close()
        timings["finalise"] = time.perf_counter() - tic
        timings["inference"] = run.seconds
        timings["total"] = time.perf_counter() - started + sum((record or {}).get("timings_s", {}).values())
        content = _sidecar_record(prepared, vocabulary, method, settings, stretch, thresholds, device, run)
        content["timings_s"] = {**(record or {}).get("timings_s", {}), **timings}
        content["windows"] = {
            "tiles": plan.tile_count,
            "tiles_skipped_nodata": done["skipped"],
            "unique_crops": plan.unique_crops,
            "crops_evaluated": done["evaluated"],
            "crop_uses": plan.crop_runs,
            "kept_logits_peak_bytes": store.peak_bytes,
            "batches": run.batches,
            "batch_size": run.batch_size,
        }
        content.update({k: v for k, v in (record or {}).items() if k != "timings_s"})
        content["peak_memory"] = peak_memory(device)
        write_sidecar(sidecar_temp, content)
        files.commit()
    except BaseException:
        for writer in writers:
            writer.close()
        files.discard()
        raise
    progress(ProgressEvent(1.0, "done", f"wrote {out_path}"))
    return SegmentResult(
        str(out_path),
        str(prepared.outputs["confidence"]) if "confidence" in prepared.outputs else None,
        str(prepared.outputs["sidecar"]),
        content,
    )


def _sidecar_record(prepared, vocabulary, method, settings, stretch, thresholds, device, run) -> dict:
    grid, working, request = prepared.grid, prepared.working, prepared.request
    return {
        "engine": {"name": "rs-ovseg", "version": __version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "input": {**asdict(prepared.source.info()), "stretch": stretch.to_json()},
        "output": {
            "classes": str(prepared.outputs["out"]),
            "confidence": str(prepared.outputs["confidence"]) if "confidence" in prepared.outputs else None,
            "size": [grid.width, grid.height],
            "window": asdict(grid.window),
            "geotransform": list(grid.geotransform) if grid.geotransform else None,
            "crs_wkt": grid.projection_wkt or None,
            "values": {
                "0": "unclassified or nodata",
                **{str(i + 1): n for i, n in enumerate(vocabulary.names)},
            },
        },
        "vocabulary": vocabulary.to_json(),
        "queries": vocabulary.queries(),
        "settings": {
            "bbox": request.bbox,
            "bbox_crs": request.bbox_crs,
            "native_gsd_m": list(grid.native_gsd),
            "working_gsd_m": working.gsd,
            "working_gsd_rule": "requested --gsd"
            if request.gsd is not None
            else f"native GSD x {grids.DEFAULT_GSD_FACTOR:.6g} (reference: 1000 px tiles seen at 448 px)",
            "working_size": [working.width, working.height],
            "threshold": request.threshold,
            "class_thresholds": thresholds,
            "crop_size": method.crop_size,
            "crop_stride": method.crop_stride,
            "logit_scale": effective_logit_scale(method, settings),
            "device": device,
            "pipeline": asdict(settings),
            "batch_size": run.batch_size,
        },
        "method": method.describe(),
        "warnings": list(prepared.warnings),
    }
