"""``python -m engine bench``: the benchmark suite (``make bench``); one JSON line per case.

Cases (engine.bench.cases): SegEarth-OV on the real 1000² tile in float32 and bfloat16 (with the labels'
agreement), ReSeg-CLIP on the same tile, a memory-scaling pair (the tile and a 4 × 4 VRT mosaic of it),
on the CPU and on CUDA when present, plus an upsampler micro-case. Each case runs in its own
interpreter (peak RSS isolated) through the same ``run_segment`` the ``segment`` command uses, with
random weights in the full-size architectures. resources/bench/README.md explains every field.
"""

from __future__ import annotations

import argparse
import fnmatch
import tempfile
from pathlib import Path

from engine.bench.cases import REAL_TILE, BenchCase, default_suite, resolve_raster
from engine.bench.memory import run_isolated
from engine.bench.report import JsonLinesReport, machine, raster_area_km2, skipped, summarise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default="resources/bench/results.jsonl",
        help="JSON-lines file to write (default resources/bench/results.jsonl)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: tiny models, a 256² raster, one repeat"
    )
    parser.add_argument("--repeats", type=int, help="timed runs per case after the warm-up (default 3)")
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="auto: the CPU, and CUDA too when a GPU is visible",
    )
    parser.add_argument(
        "--case",
        dest="cases",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only cases whose name matches this glob (repeatable), e.g. 'cpu/segearth-ov/*'",
    )
    parser.add_argument(
        "--tile", default=str(REAL_TILE), metavar="FILE", help="the real tile (default ../shared/data/...)"
    )
    parser.add_argument("--no-micro", action="store_true", help="skip the upsampler micro-case")
    parser.add_argument(
        "--peak-seconds", type=float, default=1.0, help="seconds spent measuring each matmul peak"
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--interleave",
        type=int,
        default=0,
        metavar="PAIRS",
        help="after the suite, time each case that has a cost reference PAIRS more times, alternating "
        "with its reference (a steadier ratio on a busy machine; off by default)",
    )


def _devices(choice: str) -> list[str]:
    import torch

    if choice == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return [choice]


def _device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return machine().get("cpu", "cpu")


def labels_agreement(first: Path, second: Path) -> float:
    """Fraction of pixels with the same class in two label rasters of the same grid."""
    from osgeo import gdal

    gdal.UseExceptions()
    a = gdal.Open(str(first)).ReadAsArray()
    b = gdal.Open(str(second)).ReadAsArray()
    if a.shape != b.shape:
        raise ValueError(f"label rasters differ in size: {a.shape} vs {b.shape}")
    return float((a == b).mean())


def scaling_fields(small: dict, large: dict) -> dict:
    """Ratios of the large raster of a memory-scaling pair to the small one."""
    area = large["area_km2"] / small["area_km2"]
    crops = (large["crops_evaluated"] or 0) / max(1, small["crops_evaluated"] or 0)
    time_ratio = large["seconds"] / small["seconds"]
    rss = (large["peak_rss_bytes"] or 0) / max(1, small["peak_rss_bytes"] or 0)
    sam_passes = (large.get("sam_encoder_passes"), small.get("sam_encoder_passes"))
    return {
        "scaling": {
            "small_case": small["case"],
            "area_ratio": round(area, 3),
            "peak_rss_ratio": round(rss, 3),
            "time_ratio": round(time_ratio, 3),
            "crop_evaluation_ratio": round(crops, 3),
            "time_per_crop_ratio": round(time_ratio / crops, 3) if crops else None,
            "time_per_area_ratio": round(time_ratio / area, 3),
            # ReSeg-CLIP: SAM windows grow with the area (one encoder pass per window and crop layer).
            "sam_encoder_pass_ratio": round(sam_passes[0] / sam_passes[1], 3) if all(sam_passes) else None,
        }
    }


def relative_cost_fields(reference: dict, record: dict) -> dict:
    """Seconds per km² of ``record`` over those of ``reference`` (same device and dtype), from the median
    runs and, when both records list their runs, from the fastest ones: load from elsewhere on the machine
    can only slow a run down, so the fastest runs are the steadier estimate of what each case costs."""

    def ratio(own_seconds: float, their_seconds: float) -> float:
        return round((own_seconds / record["area_km2"]) / (their_seconds / reference["area_km2"]), 3)

    fields = {
        "cost_relative_to": reference["case"],
        "cost_per_km2_ratio": ratio(record["seconds"], reference["seconds"]),
    }
    if record.get("seconds_all") and reference.get("seconds_all"):
        fields["cost_per_km2_ratio_fastest"] = ratio(
            min(record["seconds_all"]), min(reference["seconds_all"])
        )
    return fields


def run(args: argparse.Namespace) -> int:
    import torch

    from engine.bench.peak import measure_matmul_peak
    from engine.runtime.precision import torch_dtype

    devices = _devices(args.device)
    cases = default_suite(devices, quick=args.quick, repeats=args.repeats, peak_seconds=args.peak_seconds)
    if args.cases:
        cases = [c for c in cases if any(fnmatch.fnmatch(c.name, p) for p in args.cases)]
    if args.list:
        for case in cases:
            print(case.name)
        return 0
    report = JsonLinesReport(args.out)
    report.emit({"case": "machine", "quick": bool(args.quick), **machine()})
    peaks: dict[tuple[str, str], float] = {}
    for device, dtype in dict.fromkeys((c.device, c.dtype) for c in cases):
        peak = measure_matmul_peak(device, torch_dtype(dtype), seconds=args.peak_seconds)
        peaks[(device, dtype)] = peak.gflops
        report.emit({"case": f"{device}/matmul-peak/{dtype}", **peak.to_json()})
    failures = 0
    done: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="rs-ovseg-bench-") as folder:
        work = Path(folder)
        for index, case in enumerate(cases):
            record = _run_one(case, index, work, Path(args.tile), peaks, done)
            failures += "error" in record
            report.emit(record)
        if args.interleave:
            failures += _interleave(cases, args.interleave, work, Path(args.tile), report)
    if not args.no_micro and "cpu" in devices and not args.cases:
        from engine.bench.micro import upsampler_micro_case

        edge, channels = (64, 64) if args.quick else (224, 512)
        with torch.inference_mode():
            report.emit(upsampler_micro_case(edge, channels))
    return 1 if failures else 0


def _interleave(cases: list[BenchCase], pairs: int, work: Path, tile: Path, report) -> int:
    """Interleaved runs of every selected case whose cost reference is selected too; returns failures."""
    from engine.bench.interleave import interleaved_cost_ratio

    by_name = {case.name: case for case in cases}

    def seconds_per_km2(case: BenchCase) -> float:
        input_path, warmup = _inputs(case, work, tile)
        if input_path is None:
            raise RuntimeError(f"input raster absent: {tile}")
        raw = run_isolated(case, input_path, warmup_input=warmup)
        if "error" in raw or "skipped" in raw:
            raise RuntimeError(raw.get("error") or raw.get("skipped"))
        return raw["seconds"][0] / raster_area_km2(raw["raster_size"], raw["native_gsd"])

    failures = 0
    for case in cases:
        reference = by_name.get(case.cost_relative_to or "")
        if reference is None:
            continue
        try:
            report.emit(interleaved_cost_ratio(reference, case, pairs, seconds_per_km2))
        except RuntimeError as error:
            failures += 1
            report.emit({"case": f"{case.name}/interleaved", "error": str(error)})
    return failures


def _inputs(case: BenchCase, work: Path, tile: Path) -> tuple[Path | None, Path | None]:
    """The case's raster (None when its source is absent) and its warm-up raster (None: its own)."""
    input_path = resolve_raster(case, work, tile)
    if input_path is None or not case.warmup_raster:
        return input_path, None
    return input_path, resolve_raster(case, work, tile, case.warmup_raster)


def _run_one(case: BenchCase, index: int, work: Path, tile: Path, peaks: dict, done: dict[str, dict]) -> dict:
    input_path, warmup = _inputs(case, work, tile)
    if input_path is None:
        return skipped(case.name, case.method, case.device, case.dtype, f"input raster absent: {tile}")
    labels = work / f"labels_{index}.tif"
    raw = run_isolated(case, input_path, keep_labels=labels, warmup_input=warmup)
    if "error" in raw or "skipped" in raw:
        record = skipped(case.name, case.method, case.device, case.dtype, raw.get("skipped", ""))
        if "error" in raw:
            record.pop("skipped")
            record["error"] = raw["error"]
        return record
    record = summarise(
        case=case.name,
        method=case.method,
        device=case.device,
        device_name=_device_name(case.device),
        dtype=case.dtype,
        raster_size=tuple(raw["raster_size"]),
        native_gsd=raw["native_gsd"],
        working_gsd=raw["working_gsd"],
        working_size=tuple(raw["working_size"]),
        seconds=raw["seconds"],
        flop_by_part=raw["flop_by_part"],
        peak_gflops=raw.get("peak_gflops") or peaks.get((case.device, case.dtype)),
        peak_rss_bytes=raw.get("peak_rss_bytes"),
        sam_encoder_passes=raw.get("sam_encoder_passes"),
        stage_seconds=raw.get("stage_seconds", {}),
        crops_evaluated=raw.get("crops_evaluated") or 0,
        extra={
            "input": case.raster,
            "options": case.options,
            "peak_gflops_before_after": raw.get("peak_gflops_before_after"),
            "peak_gflops_suite_start": peaks.get((case.device, case.dtype)),
            "first_run_seconds": round(raw.get("first_run_seconds") or 0.0, 3),
            "first_run_text_seconds": raw.get("first_run_text_seconds"),
            "first_run_text_gflop": raw.get("first_run_text_gflop"),
            "text_sentences": raw.get("text_sentences"),
            "model_load_seconds": round(raw.get("model_load_seconds") or 0.0, 3),
            "batch_size": raw.get("batch_size"),
            "sam_cost": raw.get("sam_cost"),
            "cuda_peak_allocated_bytes": (raw.get("peak_memory") or {}).get("cuda_allocated_bytes"),
            "peak_rss_per_run_bytes": raw.get("peak_rss_per_run_bytes"),
            "process_peak_rss_bytes": raw.get("process_peak_rss_bytes"),
            "scale": raw.get("scale"),
        },
    )
    record["labels"] = str(labels) if labels.exists() else None
    if case.agreement_with and case.agreement_with in done:
        reference = done[case.agreement_with].get("labels")
        if reference and record["labels"]:
            record["agreement_with"] = case.agreement_with
            record["label_agreement"] = round(labels_agreement(Path(reference), labels), 6)
    if case.scaling_of and case.scaling_of in done:
        record.update(scaling_fields(done[case.scaling_of], record))
    if case.cost_relative_to and case.cost_relative_to in done:
        record.update(relative_cost_fields(done[case.cost_relative_to], record))
    done[case.name] = record
    return {k: v for k, v in record.items() if k != "labels"}
