"""Runs one benchmark case in this process through the segment command's own path (``engine.pipeline.job``).

Models are loaded once into a ``ModelCache`` (as the worker keeps them), then every run is the full
``run_segment``: open the raster, read, model, score, write the GeoTIFF and its sidecar. Warm-up runs
pay the one-off costs (text embeddings, allocator growth, kernel selection) and are not timed.

``python -m engine.bench.runner CASE.json RESULT.json`` runs a case in a fresh interpreter (so that
its peak RSS is its own; see ``engine.bench.memory``) and writes the raw measurements as JSON.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from engine.bench import flops as fl
from engine.bench.cases import BenchCase
from engine.bench.run_peak import RunPeaks, high_water_mark_bytes
from engine.pipeline.tiling import used_crop_indices
from engine.runtime.allocator import keep_freed_memory, release_free_memory
from engine.runtime.float_env import flush_denormals

log = logging.getLogger(__name__)


def segment_options(case: BenchCase, input_path: Path, out: Path) -> dict:
    """The ``run_segment`` options of ``case`` (random weights: speed does not depend on their values)."""
    return {
        "input": str(input_path),
        "classes": list(case.classes),
        "method": case.method,
        "out": str(out),
        "device": case.device,
        "dtype": case.dtype,
        "random_weights": True,
        "seed": 0,
        "overwrite": True,
        **case.options,
    }


def crop_shapes(plan) -> Counter:
    """(height, width) → number of crops of ``pipeline.tiling.TilePlan`` that some tile uses, each counted
    once: the pipeline evaluates a crop shared by neighbouring tiles once and keeps its logits."""
    rows, cols = used_crop_indices(plan.rows), used_crop_indices(plan.cols)
    shapes: Counter = Counter()
    for i in rows:
        y0, y1 = plan.row_spans[i]
        for j in cols:
            x0, x1 = plan.col_spans[j]
            shapes[(y1 - y0, x1 - x0)] += 1
    return shapes


def jbu_spec_of(upsampler) -> fl.JbuSpec | None:
    """The FLOP spec of an engine four-step JBU upsampler (None for bilinear or an unknown module)."""
    if upsampler is None or not hasattr(upsampler, "steps"):
        return None
    step = upsampler.steps()[0]
    return fl.JbuSpec(
        channels=int(upsampler.fixup_proj[-1].in_channels),
        radius=int(step.radius),
        key_dim=int(step.range_proj[0].out_channels),
        guidance_dim=int(step.range_proj[0].in_channels),
        steps=len(upsampler.steps()),
    )


def sam_spec_of(method) -> fl.SamEncoderSpec:
    """The FLOP spec of the SAM image encoder a ReSeg-CLIP method holds (found by attribute search)."""
    encoder = _find_attribute(method, "image_encoder", depth=3)
    if encoder is None:
        return fl.SAM_VIT_B
    blocks = list(encoder.blocks)
    windows = [int(b.window_size) for b in blocks]
    proj = encoder.patch_embed.proj
    width = int(proj.out_channels)
    return fl.SamEncoderSpec(
        image_size=int(encoder.img_size),
        patch=int(proj.kernel_size[0]),
        width=width,
        depth=len(blocks),
        global_blocks=sum(1 for w in windows if w == 0),
        window=max(windows) or 14,
        mlp_ratio=int(blocks[0].mlp.lin1.out_features) // width,
        neck_dim=int(encoder.neck[0].out_channels),
    )


def _find_attribute(obj, name: str, depth: int):
    if hasattr(obj, name):
        return getattr(obj, name)
    if depth == 0:
        return None
    for value in list(vars(obj).values()) if hasattr(obj, "__dict__") else []:
        if value is None or isinstance(value, (str, int, float, bytes, dict, list, tuple)):
            continue
        found = _find_attribute(value, name, depth - 1)
        if found is not None:
            return found
    return None


def scale_to_evaluations(flop_parts: dict[str, int], counted: int, evaluated: int | None) -> dict[str, int]:
    """Crop FLOPs scaled from the ``counted`` crops to those the run reports evaluated: crops past the
    kept-logits budget are evaluated again by the next tile row (same shapes, as a rule)."""
    if not evaluated or not counted or evaluated == counted:
        return dict(flop_parts)
    return {part: round(flop * evaluated / counted) for part, flop in flop_parts.items()}


def run_flops(method, plan, queries: int) -> dict[str, int]:
    """Nominal FLOPs of one run's crops by part (SAM is added per encoder pass by the caller)."""
    parts: Counter = Counter()
    if method.name == "segearth-ov3":
        return {}  # no FLOP model of SAM 3 yet: its cases report time, per km² and per window only
    if method.name == "segearth-ov":
        spec = fl.VitSpec.from_open_clip(method.model.visual)
        terms = len(method.dense.mode.terms)
        up = jbu_spec_of(method.upsampler)
        for (height, width), count in crop_shapes(plan).items():
            crop = fl.segearth_crop_flops(height, width, queries, spec, up, terms)
            parts["clip"] += count * crop.clip
            parts["upsampler"] += count * crop.upsampler
            parts["logits"] += count * crop.logits
    else:
        spec = fl.VitSpec.from_open_clip(method.model.visual)
        for (height, width), count in crop_shapes(plan).items():
            crop = fl.reseg_crop_flops(height, width, queries, spec)
            parts["clip"] += count * crop.clip
            parts["logits"] += count * crop.logits
    return dict(parts)


def _forget_sam_masks() -> None:
    """ReSeg-CLIP keeps SAM id maps process-wide; each timed run must compute them as a first run does."""
    try:
        from engine.methods import reseg_clip
    except ImportError:
        return
    cache = reseg_clip.SHARED_MASK_CACHE
    if hasattr(cache, "clear"):
        cache.clear()
    else:
        reseg_clip.SHARED_MASK_CACHE = type(cache)()


def _matmul_peak(case: BenchCase):
    import torch

    from engine.bench.peak import measure_matmul_peak

    return measure_matmul_peak(case.device, getattr(torch, case.dtype), seconds=case.peak_seconds)


def run_case(
    case: BenchCase,
    input_path: Path,
    workdir: Path,
    keep_labels: Path | None = None,
    warmup_input: Path | None = None,
) -> dict:
    """Warm-up runs (on ``warmup_input`` if given) and timed runs of ``case`` on ``input_path``; raw
    measurements (see report.summarise)."""
    import torch

    from engine.methods.registry import METHODS, ModelCache, create_method
    from engine.pipeline.job import prepare_job, run_segment

    if case.method not in METHODS:
        return {"skipped": f"method {case.method!r} is not registered in engine.methods.registry.METHODS"}
    workdir.mkdir(parents=True, exist_ok=True)
    models = ModelCache()
    out = workdir / "labels.tif"
    options = segment_options(case, input_path, out)
    tic = time.perf_counter()
    job = prepare_job(options)
    try:
        method = create_method(case.method, job.method_options, models)
        load_seconds = time.perf_counter() - tic
        queries = len(job.vocabulary.queries())
        flop_parts = run_flops(method, job.prepared.plan, queries)
        crops_counted = sum(crop_shapes(job.prepared.plan).values())
        sam_flops_per_pass = fl.sam_encoder_flops(sam_spec_of(method)) if case.method == "reseg-clip" else 0
        prepared = job.prepared
        sizes = {
            "raster_size": (prepared.grid.width, prepared.grid.height),
            "native_gsd": float(prepared.grid.native_gsd[0]),
            "working_gsd": float(prepared.working.gsd),
            "working_size": (prepared.working.width, prepared.working.height),
        }
    finally:
        job.prepared.source.close()
    templates = len(getattr(method, "templates", ()) or ())
    # Text embeddings are cached per model: only the first run encodes queries × templates sentences.
    text_flop = fl.clip_text_flops(queries * templates) if templates else None
    del method
    seconds, first_seconds, first_text_seconds, record = [], None, None, {}
    peaks, run_peaks, memory = [], [], RunPeaks()
    for index in range(case.warmup + case.repeats):
        if index == case.warmup:
            peaks.append(_matmul_peak(case))
        _forget_sam_masks()
        gc.collect()
        # Each run starts from a trimmed heap, as a request to a worker that has been idle does (and pays its
        # page faults), and its peak RSS is its own, not the largest of every run so far in this process.
        release_free_memory()
        memory.start_run()
        if case.device == "cuda":
            torch.cuda.synchronize()
        warming = index < case.warmup
        began = time.perf_counter()
        if warming and warmup_input is not None:
            warm_options = {**options, "input": str(warmup_input), "out": str(workdir / "warmup.tif")}
            result = run_segment(warm_options, models=models)
        else:
            result = run_segment(options, models=models)
        if case.device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - began
        if index == 0:
            first_seconds = elapsed
            first_text_seconds = result.record.get("timings_s", {}).get("text")
        if not warming:
            record = result.record
            seconds.append(elapsed)
            run_peaks.append(memory.end_run())
    peaks.append(_matmul_peak(case))
    crops_evaluated = record.get("windows", {}).get("crops_evaluated")
    flop_parts = scale_to_evaluations(flop_parts, crops_counted, crops_evaluated)
    cost = record.get("method", {}).get("cost", {})
    passes = cost.get("sam_encoder_passes") if case.method == "reseg-clip" else None
    if passes:
        flop_parts["sam_encoder"] = passes * sam_flops_per_pass
    timings = dict(record.get("timings_s", {}))
    timings.pop("model_load", None)
    if keep_labels is not None:
        shutil.copyfile(out, keep_labels)
    scale = None
    if case.scale_workers:  # the same options on a LocalCluster (engine.bench.scale)
        from engine.bench.scale import run_scale_comparison

        scale = run_scale_comparison(case, options, seconds, out, workdir)
    return {
        "scale": scale,
        **sizes,
        "seconds": seconds,
        "first_run_seconds": first_seconds,
        "first_run_text_seconds": first_text_seconds,
        "first_run_text_gflop": round(text_flop / 1e9, 1) if text_flop else None,
        "text_sentences": queries * templates,
        "model_load_seconds": load_seconds,
        "flop_by_part": flop_parts,
        # The machine's peak right before and right after the timed runs, under the same load.
        "peak_gflops": max(p.gflops for p in peaks),
        "peak_gflops_before_after": [p.gflops for p in peaks],
        "sam_encoder_passes": passes,
        "sam_cost": cost or None,
        "stage_seconds": timings,
        "crops_evaluated": crops_evaluated,
        "batch_size": record.get("windows", {}).get("batch_size"),
        "peak_memory": record.get("peak_memory"),
        # Each timed run's own high-water mark (models included); process-wide where it cannot be reset.
        "peak_rss_bytes": max(run_peaks) if run_peaks else None,
        "peak_rss_per_run_bytes": run_peaks if memory.per_run else None,
        "process_peak_rss_bytes": memory.process_peak(),  # warm-up and model loading included
    }


def main(argv: list[str] | None = None) -> int:
    """Subprocess entry: ``CASE.json RESULT.json INPUT [LABELS_COPY [WARMUP_INPUT]]``."""
    keep_freed_memory()  # as the engine's commands do (engine.runtime.allocator, engine.runtime.float_env)
    flush_denormals()
    argv = sys.argv[1:] if argv is None else argv
    case = BenchCase.from_json(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    result_path = Path(argv[1])
    input_path = Path(argv[2])
    keep = Path(argv[3]) if len(argv) > 3 and argv[3] else None
    warmup_input = Path(argv[4]) if len(argv) > 4 and argv[4] else None
    logging.basicConfig(level=logging.ERROR)
    # Every case starts without text embeddings on disk, so first_run_* is what a first run ever costs.
    from engine.clip.text_store import TEXT_CACHE_ENV

    os.environ[TEXT_CACHE_ENV] = str(result_path.parent / "text-embeddings")
    import warnings

    warnings.simplefilter("ignore")  # random-weight warnings, once per run, would drown the report
    try:
        result = run_case(case, input_path, result_path.parent / "work", keep, warmup_input)
    except Exception as exc:  # the parent records the failure as the case's result
        log.exception("case %s failed", case.name)
        result = {"error": f"{type(exc).__name__}: {exc}"}
    if result.get("peak_rss_bytes") is None:  # failed before a timed run ended
        result["peak_rss_bytes"] = high_water_mark_bytes()
    result_path.write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
