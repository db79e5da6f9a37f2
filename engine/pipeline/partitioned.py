"""A run in blocks with part files: resumable (``--resume``) and distributable (``--executor dask``).

The client fixes everything that must be the same everywhere (the grids, the tile plan, the 8-bit stretch,
the threshold), describes the run as a ``BlockJob`` (options and a few numbers, never pixels) and hands
the blocks not yet done to an executor: ``InProcessExecutor`` here, or
``engine.distributed.executor.DaskExecutor``. Both end in ``engine.pipeline.parts.write_block_part``,
i.e. ``engine.pipeline.blocks.process_block``. When every block has its part, the client assembles them
(engine.pipeline.parts.assemble), adds overviews or makes COGs (engine.raster.finish), writes the sidecar
last and removes the parts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from glob import escape as glob_escape
from pathlib import Path
from types import SimpleNamespace

from engine import __version__
from engine.pipeline.blocks import Block, BlockContext, context_for, plan_blocks
from engine.pipeline.crop_logits import count_crop_evaluations
from engine.pipeline.parts import PartsFolder, assemble, parts_folder_for, write_block_part
from engine.pipeline.progress import CancelToken, ProgressEvent, ignore_progress
from engine.pipeline.scoring import threshold_kind
from engine.raster.finish import finish_raster
from engine.raster.sidecar import write_sidecar
from engine.raster.stretch import Stretch, compute_stretch
from engine.raster.write_failures import reporting_write_failures
from engine.raster.writer import AtomicFiles
from engine.runtime.device import choose_batch_size

log = logging.getLogger(__name__)

DEFAULT_BLOCK_TILES = 4
DEFAULT_RETRIES = 2
#: Crops per model call in runs in parts without --batch-size (the same on every worker).
DEFAULT_PARTS_BATCH_SIZE = 8
#: Options that change how a run is executed, not what it writes: a resumed run may change them.
EXECUTION_OPTIONS = frozenset({"resume", "executor", "scheduler", "retries", "overwrite", "quiet"})


@dataclass(frozen=True)
class BlockJob:
    """A run as a worker sees it: its options (``SegmentOptions.to_args`` form), the stretch, the part
    folder and the fingerprint the parts are checked against. ``key`` names the run (models and opened
    rasters are cached per key on a worker)."""

    key: str
    args: dict
    stretch: dict
    parts: str
    fingerprint: dict


def job_args(options, vocabulary, prepared) -> dict:
    """Options a worker rebuilds the run from: the vocabulary as JSON (no file needed), the threshold the
    client resolved, the input as an absolute path when it is a local file."""
    args = {k: v for k, v in options.to_args().items() if k not in EXECUTION_OPTIONS}
    args.pop("classes", None)
    args["vocabulary"] = vocabulary.to_json()
    args["threshold"] = prepared.request.threshold
    if os.path.exists(str(options.input)):
        args["input"] = os.path.abspath(str(options.input))
    args["out"] = str(prepared.outputs["out"])
    if "confidence" in prepared.outputs:
        args["confidence"] = str(prepared.outputs["confidence"])
    return args


def make_job(
    options, vocabulary, prepared, stretch: Stretch, block_tiles: int, parts_folder: Path
) -> BlockJob:
    args = job_args(options, vocabulary, prepared)
    plan = prepared.plan
    fingerprint = {
        "engine": __version__,
        "options": args,
        "stretch": asdict(stretch),
        "tiles": [len(plan.rows), len(plan.cols)],
        "crops": [len(plan.row_spans), len(plan.col_spans)],
        "block_tiles": block_tiles,
    }
    fingerprint = json.loads(json.dumps(fingerprint, default=str))
    key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    return BlockJob(key, args, asdict(stretch), str(parts_folder), fingerprint)


def stretch_of(job: BlockJob) -> Stretch:
    s = job.stretch
    return Stretch(tuple(s["low"]), tuple(s["high"]), tuple(s["fill"]), bool(s["identity"]))


def open_context(options, vocabulary, prepared, method, stretch, device, *, cancel=None, progress=None):
    """The BlockContext of a run with a loaded ``method``: queries set, scoring rules fixed."""
    from engine.pipeline.segment import _plan, _threshold, effective_logit_scale

    settings = options.pipeline_settings()
    if (method.crop_size, method.crop_stride) != (prepared.crop_size, prepared.crop_stride):
        prepared.plan = _plan(prepared.grid, prepared.working, method.crop_size, method.crop_stride, settings)
        prepared.crop_size, prepared.crop_stride = method.crop_size, method.crop_stride
    literal = vocabulary.literal_queries()
    if any(literal):
        method.set_queries(vocabulary.queries(), literal=literal)
    else:
        method.set_queries(vocabulary.queries())
    budget, spill = settings.kept_logits_budget, settings.kept_logits_spill_budget
    return context_for(
        prepared,
        vocabulary,
        method,
        settings,
        stretch,
        batch_size=choose_batch_size(device, getattr(method, "bytes_per_crop", None), settings.batch_size),
        thresholds=vocabulary.thresholds(_threshold(prepared.request.threshold)),
        logit_scale=effective_logit_scale(method, settings),
        kind=threshold_kind(settings.threshold_kind),
        cancel=cancel or CancelToken(),
        progress=progress or ignore_progress,
        total_crops=max(1, count_crop_evaluations(prepared.plan, budget, len(vocabulary.queries()), spill)),
    )


def build_context(job: BlockJob, models=None) -> BlockContext:
    """A worker's BlockContext for ``job``: opens the input, loads the method (through ``models``)."""
    from engine.methods.registry import ModelCache, create_method
    from engine.options import SegmentOptions
    from engine.pipeline.segment import prepare
    from engine.runtime.device import configure_determinism, resolve_device

    options = SegmentOptions.from_mapping(job.args)
    vocabulary = options.vocabulary_of()
    device = resolve_device(options.device)
    prepared = prepare(
        options.segment_request(vocabulary),
        *options.crop_window(),
        settings=options.pipeline_settings(),
        check_outputs=False,
    )
    prepared.outputs["out"] = Path(job.args["out"])
    if job.args.get("confidence"):
        prepared.outputs["confidence"] = Path(job.args["confidence"])
    configure_determinism(device, options.seed)
    method = create_method(options.method, options.method_options(device), models or ModelCache())
    return open_context(options, vocabulary, prepared, method, stretch_of(job), device)


class InProcessExecutor:
    """Blocks one after the other in this process, with the method already loaded here."""

    name = "local"

    def __init__(self, context: BlockContext) -> None:
        self.context = context

    def run(self, job: BlockJob, blocks: list[Block], parts: PartsFolder) -> Iterator[dict]:
        for block in blocks:
            self.context.cancel.check()
            yield write_block_part(self.context, parts, block)

    def close(self) -> None:
        """Nothing to release (the caller owns the source and the method)."""


def segment_in_parts(
    job_spec,
    executor_factory,
    *,
    progress=ignore_progress,
    cancel: CancelToken | None = None,
    record: dict | None = None,
):
    """Run ``job_spec`` (engine.pipeline.job.Job) block by block into part files, then assemble.

    ``executor_factory(job, stretch)`` gives the executor (its ``run(job, blocks, parts)`` yields each
    finished block's record). Returns a SegmentResult."""
    from engine.pipeline.segment import SegmentResult, _sidecar_record

    cancel = cancel or CancelToken()
    started = time.perf_counter()
    options, vocabulary, prepared = job_spec.options, job_spec.vocabulary, job_spec.prepared
    settings = options.pipeline_settings()
    out_path = prepared.outputs["out"]
    progress(ProgressEvent(0.0, "statistics", "computing the 8-bit stretch"))
    tic = time.perf_counter()
    stretch = compute_stretch(prepared.source, prepared.grid.window)
    timings = {"statistics": time.perf_counter() - tic}
    block_tiles = options.block_tiles or DEFAULT_BLOCK_TILES
    job = make_job(options, vocabulary, prepared, stretch, block_tiles, parts_folder_for(out_path))
    parts = PartsFolder.open(out_path, job.fingerprint, options.resume)  # before any model loads
    files = AtomicFiles()
    executor = None
    try:
        executor = executor_factory(stretch)
        blocks = plan_blocks(prepared.plan, block_tiles)
        pending = [block for block in blocks if not parts.done(block)]
        if len(pending) < len(blocks):
            log.info(
                "resuming: %d of %d blocks already done in %s",
                len(blocks) - len(pending),
                len(blocks),
                parts.folder,
            )
        finished = len(blocks) - len(pending)
        tic = time.perf_counter()
        executor.plan = prepared.plan  # names a failing block's pixels
        for result in executor.run(job, pending, parts):
            finished += 1
            fraction = 0.02 + 0.9 * finished / max(1, len(blocks))
            progress(ProgressEvent(fraction, "inference", f"block {finished}/{len(blocks)} done"))
            log.debug("block %s done in %.1f s", result["block"][0], result["seconds"])
        timings["blocks"] = time.perf_counter() - tic
        cancel.check()
        progress(ProgressEvent(0.93, "write", "assembling the outputs"))
        tic = time.perf_counter()
        if options.resume:
            _remove_stale_temporaries(prepared.outputs.values())
        temporaries = {"classes": files.temporary_for(out_path)}
        if "confidence" in prepared.outputs:
            temporaries["confidence"] = files.temporary_for(prepared.outputs["confidence"])
        sidecar_temp = files.temporary_for(prepared.outputs["sidecar"])
        shown = {"classes": out_path, "confidence": prepared.outputs.get("confidence")}
        for what, temporary in temporaries.items():
            with reporting_write_failures(shown[what]):
                assemble(parts, blocks, prepared.plan, prepared.grid, vocabulary, what, temporary)
            finish_raster(temporary, what, prepared.request.output_format, shown[what])
        timings["assemble"] = time.perf_counter() - tic
        records = [parts.record(block) for block in blocks]
        timings["total"] = time.perf_counter() - started + sum((record or {}).get("timings_s", {}).values())
        device = getattr(executor, "device", "per worker")
        content = _parts_sidecar(
            prepared, vocabulary, settings, stretch, records, record, device, _sidecar_record
        )
        content["timings_s"] = {**(record or {}).get("timings_s", {}), **timings}
        content["execution"] = {
            "executor": executor.name,
            "blocks": len(blocks),
            "block_tiles": block_tiles,
            "resumed_blocks": len(blocks) - len(pending),
        }
        with reporting_write_failures(prepared.outputs["sidecar"]):
            write_sidecar(sidecar_temp, content)
            files.commit()  # the rasters first, the sidecar last: its presence means a complete output
        parts.remove()
    except BaseException:
        files.discard()
        if not options.resume:
            parts.remove()  # nothing to resume from: leave nothing behind
        raise
    finally:
        if executor is not None:
            executor.close()
    progress(ProgressEvent(1.0, "done", f"wrote {out_path}"))
    confidence = prepared.outputs.get("confidence")
    return SegmentResult(
        str(out_path), str(confidence) if confidence else None, str(prepared.outputs["sidecar"]), content
    )


def _remove_stale_temporaries(finals) -> None:
    """Temporary outputs of an earlier attempt killed while assembling (AtomicFiles' names:
    ``.STEM.partial-XXXXXXXX.SUFFIX`` and their side files); never the user's files."""
    for final in finals:
        final = Path(final)
        for stale in final.parent.glob(f".{glob_escape(final.stem)}.partial-*{glob_escape(final.suffix)}*"):
            marker = stale.name[len(final.stem) + len(".partial-") + 1 :]
            if len(marker) >= 8 and all(ch in "0123456789abcdef" for ch in marker[:8]):
                stale.unlink(missing_ok=True)


def _parts_sidecar(prepared, vocabulary, settings, stretch, records, record, device, sidecar_record) -> dict:
    """The sidecar of a run in parts: the local run's record, counters summed over the blocks."""
    first = records[0]
    method = SimpleNamespace(
        crop_size=prepared.crop_size,
        crop_stride=prepared.crop_stride,
        describe=lambda: first["method"],
        logit_scale=first.get("logit_scale"),
    )
    if method.logit_scale is None:
        del method.logit_scale
    run = SimpleNamespace(batch_size=first["batch_size"])
    thresholds = vocabulary.thresholds(prepared.request.threshold)
    content = sidecar_record(prepared, vocabulary, method, settings, stretch, thresholds, device, run)
    plan = prepared.plan
    content["windows"] = {
        "tiles": plan.tile_count,
        "tiles_skipped_nodata": sum(r["tiles_skipped_nodata"] for r in records),
        "unique_crops": plan.unique_crops,
        "crops_evaluated": sum(r["crops_evaluated"] for r in records),
        "crop_uses": plan.crop_runs,
        "batches": sum(r["batches"] for r in records),
        "batch_size": first["batch_size"],
    }
    content.update({k: v for k, v in (record or {}).items() if k != "timings_s"})
    return content


def run_in_parts(job_spec, *, models=None, progress=ignore_progress, cancel: CancelToken | None = None):
    """``segment --resume`` or ``--executor dask`` for a validated request (engine.pipeline.job.Job)."""
    from engine.methods.registry import RANDOM_WEIGHTS_WARNING, ModelCache, create_method
    from engine.runtime.device import configure_determinism

    cancel = cancel or CancelToken()
    if job_spec.options.batch_size is None:
        # Every process batches crops alike (engine.pipeline.batch_schedule): one batch size for all.
        job_spec.options = replace(job_spec.options, batch_size=DEFAULT_PARTS_BATCH_SIZE)
    options = job_spec.options
    record = {
        "timings_s": {},
        "method_options": job_spec.method_options.to_json(),
        "random_weights": job_spec.method_options.random_weights,
        "options": options.describe(),
    }
    if job_spec.method_options.random_weights:
        record["warning"] = RANDOM_WEIGHTS_WARNING
    if options.executor == "dask":
        from engine.distributed.executor import DaskExecutor

        def factory(stretch):
            retries = DEFAULT_RETRIES if options.retries is None else options.retries
            return DaskExecutor(options.scheduler, retries, cancel=cancel, progress=progress)

    else:

        def factory(stretch):
            configure_determinism(job_spec.device, job_spec.method_options.seed)
            progress(ProgressEvent(0.01, "model", f"loading {options.method}"))
            tic = time.perf_counter()
            method = create_method(options.method, job_spec.method_options, models or ModelCache())
            record["timings_s"]["model_load"] = time.perf_counter() - tic
            context = open_context(
                options,
                job_spec.vocabulary,
                job_spec.prepared,
                method,
                stretch,
                job_spec.device,
                cancel=cancel,
                progress=progress,
            )
            executor = InProcessExecutor(context)
            executor.device = job_spec.device
            return executor

    return segment_in_parts(job_spec, factory, progress=progress, cancel=cancel, record=record)
