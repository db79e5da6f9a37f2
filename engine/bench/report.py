"""Benchmark records: one JSON object per case, printed and appended to a JSON-lines file.

Every measured case carries ``REQUIRED_FIELDS`` (resources/bench/README.md says what each means); a case that
cannot run here (no input raster, no GPU, method not built) is recorded with ``skipped`` and a reason
instead, so the file always says what was and was not measured.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
from pathlib import Path
from typing import TextIO

#: Fields of every measured case.
REQUIRED_FIELDS = (
    "case",
    "method",
    "device",
    "device_name",
    "dtype",
    "raster_size",
    "native_gsd_m",
    "working_gsd_m",
    "working_size",
    "area_km2",
    "repeats",
    "seconds",
    "seconds_all",
    "megapixels_per_s",
    "km2_per_min",
    "gflop",
    "gflop_by_part",
    "achieved_gflops",
    "peak_gflops",
    "mfu",
    "peak_rss_bytes",
    "sam_encoder_passes",
    "stage_seconds",
    "crops_evaluated",
)


def raster_area_km2(raster_size, native_gsd: float) -> float:
    """Ground area of a (width, height) raster with square pixels of ``native_gsd`` metres."""
    width, height = raster_size
    return width * height * native_gsd * native_gsd / 1e6


def summarise(
    *,
    case: str,
    method: str,
    device: str,
    device_name: str,
    dtype: str,
    raster_size: tuple[int, int],
    native_gsd: float,
    working_gsd: float,
    working_size: tuple[int, int],
    seconds: list[float],
    flop_by_part: dict[str, int],
    peak_gflops: float | None,
    peak_rss_bytes: int | None,
    sam_encoder_passes: int | None,
    stage_seconds: dict[str, float],
    crops_evaluated: int,
    extra: dict | None = None,
) -> dict:
    """A case's record from its raw measurements (``seconds``: one wall time per timed repeat)."""
    median = statistics.median(seconds)
    width, height = raster_size
    area_km2 = raster_area_km2(raster_size, native_gsd)
    total_flop = sum(flop_by_part.values())
    achieved = total_flop / median / 1e9
    record = {
        "case": case,
        "method": method,
        "device": device,
        "device_name": device_name,
        "dtype": dtype,
        "raster_size": [width, height],
        "native_gsd_m": native_gsd,
        "working_gsd_m": round(working_gsd, 6),
        "working_size": list(working_size),
        "area_km2": round(area_km2, 6),
        "repeats": len(seconds),
        "seconds": round(median, 4),
        "seconds_all": [round(s, 4) for s in seconds],
        "megapixels_per_s": round(width * height / 1e6 / median, 4),
        "working_megapixels_per_s": round(working_size[0] * working_size[1] / 1e6 / median, 4),
        "km2_per_min": round(area_km2 / median * 60, 4),
        "gflop": round(total_flop / 1e9, 3),
        "gflop_by_part": {k: round(v / 1e9, 3) for k, v in flop_by_part.items()},
        "achieved_gflops": round(achieved, 2),
        "peak_gflops": peak_gflops,
        "mfu": round(achieved / peak_gflops, 4) if peak_gflops else None,
        "peak_rss_bytes": peak_rss_bytes,
        "sam_encoder_passes": sam_encoder_passes,
        "stage_seconds": {k: round(v, 4) for k, v in stage_seconds.items()},
        "crops_evaluated": crops_evaluated,
    }
    record.update(extra or {})
    return record


def skipped(case: str, method: str, device: str, dtype: str, reason: str) -> dict:
    return {"case": case, "method": method, "device": device, "dtype": dtype, "skipped": reason}


def machine() -> dict:
    """Where the numbers came from (goes into a header record of the results file)."""
    import torch

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


class JsonLinesReport:
    """Prints each record as one JSON line to ``stream`` and appends it to ``path`` (if given)."""

    def __init__(self, path: str | Path | None, stream: TextIO = sys.stdout, append: bool = False):
        self.path = Path(path) if path else None
        self.stream = stream
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not append:
                self.path.write_text("", encoding="utf-8")

    def emit(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=False)
        print(line, file=self.stream, flush=True)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
