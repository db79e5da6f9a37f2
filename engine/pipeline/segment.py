"""Raster in, raster out: ties raster IO, tiling, a method and scoring together.

Flow per run (see engine/pipeline/tiling.py for the geometry): open the source and fix the requested grid
(``prepare``, no model needed; also used by ``estimate``), compute the 8-bit stretch once, then for
each read tile: resample the source to the working grid, run every crop touching the tile through the
method in batches, average overlapping crop logits, resize them bilinearly to the output pixels, score
(× logit scale, softmax, max over synonyms, argmax, threshold) and write labels (and confidence).
Outputs are temporary files until the run succeeds; cancellation and errors leave nothing behind.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine import __version__
from engine.errors import UserError
from engine.pipeline.blocks import WriterSink, context_for, padded_image, process_block, whole_plan
from engine.pipeline.crop_logits import count_crop_evaluations
from engine.pipeline.progress import CancelToken, ProgressCallback, ProgressEvent, ignore_progress
from engine.pipeline.scoring import ScoringSettings, threshold_kind
from engine.pipeline.tiling import TilePlan, plan_tiles
from engine.raster import grid as grids
from engine.raster.finish import finish_raster
from engine.raster.gdal_setup import size_block_cache
from engine.raster.output_paths import ensure_outputs_safe
from engine.raster.reader import RasterSource, parse_bands
from engine.raster.sidecar import write_sidecar
from engine.raster.stretch import compute_stretch
from engine.raster.write_failures import reporting_write_failures
from engine.raster.writer import (
    AtomicFiles,
    ClassRasterWriter,
    ConfidenceRasterWriter,
    block_row_bytes,
    check_output_path,
    sidecar_path,
)
from engine.runtime.device import choose_batch_size, peak_memory
from engine.vocabulary import Vocabulary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentRequest:
    """What to segment and where to write it (the CLI's options, minus vocabulary and model)."""

    input: str
    out: str | None = None  # None only for estimates
    # Other files the run reads (vocabulary, checkpoints, ...): no output may be one of them either.
    other_inputs: tuple[str, ...] = ()
    confidence: str | None = None
    bands: tuple[int, ...] | str | None = None  # "3,2,1" or (3, 2, 1); None: R/G/B bands, else 1-2-3
    bbox: str | tuple[float, float, float, float] | None = None  # minx,miny,maxx,maxy
    bbox_crs: str | None = None  # default: the raster's CRS
    gsd: float | None = None  # working metres per pixel; None: native × gsd_factor (or fit_edge)
    # The method's rule for the default working resolution (engine.methods.spec.MethodSpec.gsd_factor);
    # fit_edge: instead, the extent fits inside this many working pixels a side (SegEarth-OV reference).
    gsd_factor: float = grids.DEFAULT_GSD_FACTOR
    fit_edge: int | None = None
    threshold: float = ScoringSettings.threshold
    overwrite: bool = False
    # GCP/RPC (or rotated) rasters: resample to a north-up grid instead of keeping their GCPs/RPCs.
    warp: bool = False
    # "gtiff": tiled GeoTIFFs with internal overviews; "cog": Cloud-Optimised GeoTIFFs (engine.raster.finish)
    output_format: str = "gtiff"


@dataclass(frozen=True)
class PipelineSettings:
    # Working pixels per read-tile side; memory scales with its square × the number of queries.
    tile_working: int = 896
    # Cap on output pixels per tile side (matters when the working grid is much coarser than the raster).
    max_output_tile: int = 4096
    # Output pixels scored at once: strips of this many pixels' worth of rows bound the Q × rows × width
    # upsampled-logit buffers whatever the tile's width (in rows, wider tiles made larger buffers).
    score_pixels: int = 256 * 1024
    # Crops per model call; None adapts to the device's free memory.
    batch_size: int | None = None
    # Multiplier on the logits before the softmax; None: the method's ``logit_scale`` attribute when it
    # has one (ReSeg-CLIP: 1, raw cosines), else SegEarth-OV's 50.
    logit_scale: float | None = None
    # Bytes of crop logits kept in memory for the next tile row (so border crops are evaluated once):
    # memory stays flat for any raster width.
    kept_logits_budget: int = 64 * 2**20
    # Past that, bytes of them parked in a temporary file beside the output (read back through the page
    # cache in milliseconds instead of a model call per crop); past this too, the next row evaluates
    # them again. 0: no file.
    kept_logits_spill_budget: int = 8 * 2**30
    # What the threshold compares (engine.pipeline.scoring.THRESHOLD_KINDS): the winning probability, or
    # the raw-logit margin of the winning class over the runner-up (ReSeg-CLIP).
    threshold_kind: str = "probability"
    # "shift": the last crop of an axis is moved back inside the raster (SegEarth-OV / mmseg); "pad": it
    # is padded with black past the raster edge (ReSeg-CLIP's reference).
    crop_edge: str = "shift"


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
            "geometry": self.grid.geometry_label,
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
        # Before any existence check: an output over an input is refused whatever --overwrite says.
        ensure_outputs_safe(
            [request.input, *request.other_inputs],
            {
                "--out": request.out,
                "--confidence": request.confidence,
                "sidecar": str(sidecar_path(Path(request.out).expanduser())),
            },
        )
        outputs["out"] = check_output_path(request.out, request.overwrite)
        outputs["sidecar"] = check_output_path(sidecar_path(outputs["out"]), request.overwrite, "sidecar")
        if request.confidence:
            outputs["confidence"] = check_output_path(
                request.confidence, request.overwrite, "confidence output"
            )
        if len(set(outputs.values())) != len(outputs):
            raise UserError("the class raster, confidence raster and sidecar must be different files")
    source = RasterSource(
        request.input, parse_bands(bands) if isinstance(bands, str) else bands, warp=request.warp
    )
    try:
        size = (source.width, source.height)
        if not source.georeferenced:
            warnings.append(
                f"{source.path} has no georeferencing: output in pixel space, --gsd in source pixels"
            )
        # The outputs keep the source's placement (geotransform, GCPs or RPCs; warped: the new grid's).
        grid, grid_warnings = grids.requested_grid(source.geometry, size, request.bbox, request.bbox_crs)
        warnings += grid_warnings
        working = grids.working_grid(grid, request.gsd, request.gsd_factor, request.fit_edge)
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
        pad_edges=settings.crop_edge == "pad",
    )


def estimate(
    request: SegmentRequest,
    crop_size: int = 224,
    crop_stride: int = 112,
    settings=None,
    queries: int | None = None,
) -> dict:
    """Sizes, tiles and crops a run would process, without loading a model or writing anything. With the
    vocabulary's ``queries`` count, ``crop_evaluations`` includes crops the kept-logits budget makes the
    next tile row evaluate again (wide rasters); without it, each crop once."""
    settings = settings or PipelineSettings()
    prepared = prepare(request, crop_size, crop_stride, settings, check_outputs=False)
    try:
        summary = prepared.summary()
    finally:
        prepared.source.close()
    if queries:
        summary["crop_evaluations"] = count_crop_evaluations(
            prepared.plan, settings.kept_logits_budget, queries, settings.kept_logits_spill_budget
        )
    return summary


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
    kind = threshold_kind(settings.threshold_kind)
    files = AtomicFiles()
    writers = []
    progress(ProgressEvent(0.0, "statistics", "computing the 8-bit stretch"))
    tic = time.perf_counter()
    stretch = compute_stretch(source, grid.window)
    timings["statistics"] = time.perf_counter() - tic
    tic = time.perf_counter()
    literal = vocabulary.literal_queries()
    if any(literal):  # whole prompts, encoded as written (engine.methods.base.TextQueryMethod)
        method.set_queries(vocabulary.queries(), literal=literal)
    else:
        method.set_queries(vocabulary.queries())
    timings["text"] = time.perf_counter() - tic
    bytes_per_crop = getattr(method, "bytes_per_crop", None)
    budget, spill_budget = settings.kept_logits_budget, settings.kept_logits_spill_budget
    total_crops = max(1, count_crop_evaluations(plan, budget, len(vocabulary.queries()), spill_budget))
    # The one block-processing function (engine.pipeline.blocks): here the whole plan is one block.
    context = context_for(
        prepared,
        vocabulary,
        method,
        settings,
        stretch,
        batch_size=choose_batch_size(device, bytes_per_crop, settings.batch_size),
        thresholds=thresholds,
        logit_scale=logit_scale,
        kind=kind,
        cancel=cancel,
        progress=progress,
        total_crops=total_crops,
    )
    run, done, kept = context.run, context.done, context.kept

    try:
        out_path = prepared.outputs["out"]
        size_block_cache(block_row_bytes(grid.width, "confidence" in prepared.outputs))
        classes = ClassRasterWriter(files.temporary_for(out_path), grid, vocabulary, shown_as=out_path)
        writers.append(classes)
        confidence = None
        if "confidence" in prepared.outputs:
            confidence_path = prepared.outputs["confidence"]
            confidence = ConfidenceRasterWriter(
                files.temporary_for(confidence_path), grid, shown_as=confidence_path
            )
            writers.append(confidence)
        sidecar_temp = files.temporary_for(prepared.outputs["sidecar"])
        process_block(context, whole_plan(plan), WriterSink(classes, confidence))
        timings.update(context.timings)
        cancel.check()
        progress(ProgressEvent(0.99, "write", "finishing the outputs"))
        tic = time.perf_counter()
        for writer in writers:
            writer.close()
        for writer, kind in zip(writers, ("classes", "confidence")):
            finish_raster(writer.path, kind, request.output_format, writer.shown_as)
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
            "kept_logits_peak_bytes": kept["peak_bytes"],
            "kept_logits_spilled_crops": kept["spilled_crops"],
            "kept_logits_spill_peak_bytes": kept["spill_peak_bytes"],
            "batches": run.batches,
            "batch_size": run.batch_size,
        }
        content.update({k: v for k, v in (record or {}).items() if k != "timings_s"})
        content["peak_memory"] = peak_memory(device)
        with reporting_write_failures(prepared.outputs["sidecar"]):
            write_sidecar(sidecar_temp, content)
            files.commit()
    except BaseException:
        for writer in writers:
            writer.abandon()  # never raises: a failure here must not stop the clean-up
        files.discard()
        raise
    progress(ProgressEvent(1.0, "done", f"wrote {out_path}"))
    return SegmentResult(
        str(out_path),
        str(prepared.outputs["confidence"]) if "confidence" in prepared.outputs else None,
        str(prepared.outputs["sidecar"]),
        content,
    )


_padded_image = padded_image  # moved to engine.pipeline.blocks


def _gsd_rule(request: SegmentRequest) -> str:
    if request.gsd is not None:
        return "requested --gsd"
    if request.fit_edge:
        return f"extent fitted inside {request.fit_edge} px (the reference resizes each image so)"
    return f"native GSD x {request.gsd_factor:.6g} (the method's default)"


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
            **_placement_record(grid),
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
            "warp": request.warp,
            "native_gsd_m": list(grid.native_gsd),
            "working_gsd_m": working.gsd,
            "working_gsd_rule": _gsd_rule(request),
            "working_size": [working.width, working.height],
            "threshold": request.threshold,
            "class_thresholds": thresholds,
            "threshold_kind": settings.threshold_kind,
            "crop_edge": settings.crop_edge,
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


def _placement_record(grid) -> dict:
    """How the outputs are placed: "geometry" (geotransform, gcps, rpc, warped from gcps, none) and the
    outputs' own GCPs or RPCs (those of the input shifted to the window)."""
    placement = grid.placement
    record: dict = {"geometry": grid.geometry_label}
    if placement is not None and placement.kind == "gcps":
        record["gcps"] = [list(point[:5]) for point in placement.gcps]
    if placement is not None and placement.kind == "rpc":
        record["rpc"] = dict(placement.rpc)
    return record
