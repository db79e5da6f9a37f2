"""A segment request run end to end: options → validated job → method (through the registry) → pipeline.

The one entry point the ``segment`` command, the worker, ``reproduce`` and the bench share, so a request
means the same wherever it comes from. Runs in parts (``--resume``, ``--executor dask``) branch off here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from engine.options import SegmentOptions


@dataclass
class Job:
    """A segment request resolved from options: everything validated, nothing loaded yet."""

    options: SegmentOptions
    vocabulary: object
    prepared: object
    device: str
    method_options: object


def options_of(raw: Mapping | SegmentOptions) -> SegmentOptions:
    return raw if isinstance(raw, SegmentOptions) else SegmentOptions.from_mapping(raw)


def prepare_job(raw: Mapping | SegmentOptions) -> Job:
    """Validate a request fully (vocabulary, raster, bands, bbox, GSD, outputs) before any model loads."""
    from engine.pipeline.segment import prepare
    from engine.runtime.device import resolve_device

    options = options_of(raw)
    vocabulary = options.vocabulary_of()
    device = resolve_device(options.device)
    request = replace(options.segment_request(vocabulary), other_inputs=files_read(options))
    prepared = prepare(request, *options.crop_window(), settings=options.pipeline_settings())
    return Job(options, vocabulary, prepared, device, options.method_options(device))


def files_read(options: SegmentOptions) -> tuple[str, ...]:
    """Files besides the raster that a request names (vocabulary, checkpoints, templates, SAM parameter
    sets, ...): an output that is one of them would destroy it (``--out buildings.tif`` writes its
    sidecar over a vocabulary ``buildings.json``)."""
    named = [v for k, v in options.to_args().items() if k not in ("input", "out", "confidence")]
    return tuple(v for v in named if isinstance(v, str) and Path(v).expanduser().is_file())


def has_parts(job: Job) -> bool:
    """Whether an unfinished run in parts left its parts beside the output (engine.pipeline.parts)."""
    from engine.pipeline.parts import parts_folder_for

    return parts_folder_for(job.prepared.outputs["out"]).exists()


def run_segment(raw, *, models=None, progress=None, cancel=None, job: Job | None = None):
    """Validate, load the method (through ``models``, a ModelCache), segment. Returns a SegmentResult.
    ``raw``: CLI/worker options (a mapping) or a SegmentOptions."""
    from engine.methods.registry import RANDOM_WEIGHTS_WARNING, ModelCache, create_method
    from engine.pipeline.progress import ProgressEvent, ignore_progress
    from engine.pipeline.segment import segment
    from engine.runtime.device import configure_determinism

    progress = progress or ignore_progress
    progress(ProgressEvent(0.0, "open", "checking the request"))
    job = job or prepare_job(raw)
    try:
        if job.options.resume or job.options.executor == "dask" or has_parts(job):  # blocks (scale.md)
            from engine.pipeline.partitioned import run_in_parts

            return run_in_parts(job, models=models, progress=progress, cancel=cancel)
        configure_determinism(job.device, job.method_options.seed)
        progress(ProgressEvent(0.01, "model", f"loading {job.options.method}"))
        tic = time.perf_counter()
        method = create_method(job.options.method, job.method_options, models or ModelCache())
        load_seconds = time.perf_counter() - tic
        record = {
            "timings_s": {"model_load": load_seconds},
            "method_options": job.method_options.to_json(),
            "random_weights": job.method_options.random_weights,
            "options": job.options.describe(),
        }
        if job.method_options.random_weights:
            record["warning"] = RANDOM_WEIGHTS_WARNING
        return segment(
            job.prepared,
            job.vocabulary,
            method,
            settings=job.options.pipeline_settings(),
            device=job.device,
            progress=progress,
            cancel=cancel,
            record=record,
        )
    finally:
        job.prepared.source.close()
