"""The expected run time shown before a run: the plan's window count × this machine's seconds per window.

Seconds per window, best source first:

- ``measured``: this machine's last runs with the same method, device, float type and models
  (``SpeedStore``, a small JSON file in the engine's home folder; each finished run adds its window
  count and seconds). A straight line through them (``fit_runs``) separates a run's fixed cost (the
  first batch after loading warms kernels and allocations, the last tile's scoring) from the cost of
  each window: one-window runs alone would make every window cost what the whole run did;
- ``reference``: the bench machine's figure for the method (``REFERENCE``, from the per-km² cases in
  resources/bench/results.jsonl) scaled by how fast this device multiplies matrices compared with the
  bench machine (the caller measures that once, in about a tenth of a second).

A window's seconds cover everything a run does per evaluated window (reading, CLIP, the upsampler, SAM for
ReSeg-CLIP, scoring, writing). Setting up (loading the model, encoding the vocabulary's text) comes on top
when the engine has not loaded the model yet: measured the same way (the last runs that loaded it), else
the bench's load and text times. The reference is rough (SAM's share varies with the scene; a GPU runs
small batches below its matmul peak): it is shown as such until a run here replaces it with a measurement.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Runs kept per key (the measured speed is fitted through them; setup is their median).
KEPT_RUNS = 8
#: File name of the store inside the engine's home folder.
SPEED_FILE_NAME = "window-speed.json"
#: A run whose model load took less than this found the model loaded already: no setup measured.
LOADED_MODEL_SECONDS = 0.5


@dataclass(frozen=True)
class Reference:
    """One bench case: seconds per evaluated window at ``peak_gflops`` (the same run's matmul peak)."""

    seconds_per_window: float
    peak_gflops: float
    peak_dtype: str  # the float type whose matmul peak the window time scales with
    case: str
    setup_seconds: float = 0.0  # the first run's model load + text encoding (not scaled)


# (method, SAM architecture or "", float type) → the bench machine's figure (AMD EPYC, 2 cores, CPU; the
# per-km² cases: 2 × 2 OpenEarthMap tiles at 1.12 m/px). ReSeg-CLIP's SAM runs in float32 whatever
# CLIP's type, so its windows scale with the float32 peak (the suite's, 414 GFLOP/s, for the bf16 case).
REFERENCE: dict[tuple[str, str, str], Reference] = {
    ("segearth-ov", "", "float32"): Reference(
        13.606 / 49, 410.2, "float32", "cpu/per-km2/segearth-ov/float32", 3.175 + 3.207
    ),
    ("segearth-ov", "", "bfloat16"): Reference(
        8.294 / 49, 718.44, "bfloat16", "cpu/per-km2/segearth-ov/bfloat16", 3.425 + 2.238
    ),
    ("reseg-clip", "vit_b", "float32"): Reference(
        29.708 / 16, 407.96, "float32", "cpu/per-km2/reseg-clip/float32", 3.31 + 0.265
    ),
    ("reseg-clip", "vit_b", "bfloat16"): Reference(
        25.596 / 16, 414.17, "float32", "cpu/per-km2/reseg-clip/bfloat16", 3.072 + 0.132
    ),
    ("reseg-clip", "vit_h", "float32"): Reference(
        105.113 / 16, 413.32, "float32", "cpu/per-km2/reseg-clip-sam-vit-h/float32", 10.422 + 0.209
    ),
    # Full-size SAM 3, one 512-px window with OpenEarthMap's 13 queries (resources/bench/
    # results_segearth_ov3_cpu.jsonl; the machine was shared, so this is on the slow side).
    ("segearth-ov3", "", "float32"): Reference(
        234.487, 210.86, "float32", "cpu/segearth-ov3/tile/float32", 31.008 + 9.109
    ),
    ("segearth-ov3", "", "bfloat16"): Reference(
        64.455, 400.22, "bfloat16", "cpu/segearth-ov3/tile/bfloat16", 12.536 + 10.096
    ),
}
#: ReSeg-CLIP's default SAM architecture (the registry's default SAM is sam-vit-h).
DEFAULT_SAM = "vit_h"
SAM_ARCHITECTURE_NAMES = ("vit_b", "vit_l", "vit_h")


def sam_architecture(spec: str | None) -> str:
    """The SAM architecture a spec names ("sam-vit-b", "sam_vit_b_01ec64.pth", "vit_b"; None: default)."""
    text = (spec or "").lower().replace("-", "_")
    return next((name for name in SAM_ARCHITECTURE_NAMES if name in text), text or DEFAULT_SAM)


@dataclass(frozen=True)
class SpeedKey:
    """What a window's time depends on, besides the machine: method, device, float type and models."""

    method: str
    device: str  # resolved: cpu, cuda, mps
    dtype: str  # resolved: float32, bfloat16, float16
    clip: str = ""
    sam: str = ""

    def text(self) -> str:
        return "|".join((self.method, self.device, self.dtype, self.clip, self.sam))


def setup_seconds_of_run(record: dict) -> float | None:
    """Seconds a finished run spent setting up (model load + text), if it loaded its model."""
    timings = record.get("timings_s") or {}
    load = float(timings.get("model_load") or 0.0)
    if load < LOADED_MODEL_SECONDS:
        return None
    return load + float(timings.get("text") or 0.0)


def windows_of_run(record: dict) -> tuple[int, float] | None:
    """(evaluated windows, seconds spent on them) of a finished run, from its sidecar record
    (``timings_s``, ``windows``): the run's time less model loading, text and statistics."""
    timings = record.get("timings_s") or {}
    evaluated = int((record.get("windows") or {}).get("crops_evaluated") or 0)
    total = timings.get("total")
    if not evaluated or total is None:
        return None
    once = sum(float(timings.get(name) or 0.0) for name in ("model_load", "text", "statistics"))
    seconds = float(total) - once
    return (evaluated, seconds) if seconds > 0 else None


def fit_runs(runs: list[tuple[int, float]]) -> tuple[float, float]:
    """(fixed seconds per run, seconds per window) through ``runs`` = [(windows, seconds)]: least squares
    when they span two window counts or more and give a positive slope; else no fixed part and the
    total seconds over the total windows."""
    counts = {n for n, _ in runs}
    if len(counts) >= 2:
        mean_n = sum(n for n, _ in runs) / len(runs)
        mean_s = sum(t for _, t in runs) / len(runs)
        spread = sum((n - mean_n) ** 2 for n, _ in runs)
        slope = sum((n - mean_n) * (t - mean_s) for n, t in runs) / spread
        if slope > 0:
            return max(0.0, mean_s - slope * mean_n), slope
    return 0.0, sum(t for _, t in runs) / sum(n for n, _ in runs)


class SpeedStore:
    """This machine's measured runs, by ``SpeedKey``: ``runs`` ([windows, seconds] each) and ``setup``
    (seconds of the runs that loaded their model), each the last KEPT_RUNS; a JSON file written by
    rename.

    A file that cannot be read or written only loses the measurements: the estimate falls back to the
    reference, a run never fails for it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, dict[str, list]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        kept = {}
        for key, entry in data.items():
            if not isinstance(entry, dict):
                continue
            runs = [
                [int(pair[0]), float(pair[1])]
                for pair in entry.get("runs") or []
                if isinstance(pair, list) and len(pair) == 2 and pair[0] > 0 and pair[1] > 0
            ]
            setup = [float(v) for v in entry.get("setup") or [] if isinstance(v, int | float) and v > 0]
            kept[key] = {"runs": runs, "setup": setup}
        return kept

    def runs(self, key: SpeedKey) -> list[tuple[int, float]]:
        """The kept (windows, seconds) of ``key``'s runs, oldest first."""
        return [(n, t) for n, t in self._read().get(key.text(), {}).get("runs", [])]

    def setup_seconds(self, key: SpeedKey) -> float | None:
        """The median setup seconds of ``key``'s runs that loaded their model, or None."""
        values = self._read().get(key.text(), {}).get("setup")
        return statistics.median(values) if values else None

    def add(self, key: SpeedKey, windows: int, seconds: float, setup_seconds: float | None = None) -> None:
        """Add one run: its windows and their seconds and, if it loaded its model, its setup seconds."""
        data = self._read()
        entry = data.setdefault(key.text(), {"runs": [], "setup": []})
        entry["runs"] = [*entry["runs"], [int(windows), round(float(seconds), 6)]][-KEPT_RUNS:]
        if setup_seconds is not None:
            entry["setup"] = [*entry["setup"], round(float(setup_seconds), 6)][-KEPT_RUNS:]
        temporary = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".speed-", dir=self.path.parent)
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(data, stream, indent=1, sort_keys=True)
            os.replace(temporary, self.path)
        except OSError:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)


def reference_for(key: SpeedKey) -> Reference | None:
    """The bench figure for ``key``'s method, SAM and float type (float16 reads as bfloat16)."""
    dtype = "bfloat16" if key.dtype == "float16" else key.dtype
    sam = sam_architecture(key.sam) if key.method == "reseg-clip" else key.sam
    return REFERENCE.get((key.method, sam, dtype)) or REFERENCE.get((key.method, sam, "float32"))


def expected_run_time(
    key: SpeedKey,
    windows: int,
    store: SpeedStore | None,
    peak_gflops: dict[str, float] | None,
    model_loaded: bool = False,
) -> dict | None:
    """The run's expected seconds for ``windows`` evaluated windows, or None when nothing gives a speed.

    ``peak_gflops``: this device's matmul GFLOP/s per float type name, for the reference (only the
    type ``reference_for(key).peak_dtype`` is read). ``model_loaded``: the engine holds the model
    already (no setup). Returns ``seconds`` (all), ``window_seconds``, ``setup_seconds``,
    ``seconds_per_window``, ``run_overhead_seconds`` (measured only), ``basis`` ("measured" or
    "reference", for the windows), ``runs`` (measured) or ``case`` (reference), and ``device``."""
    reference = reference_for(key)
    measured = store.runs(key) if store is not None else []
    overhead = 0.0
    if measured:
        overhead, per_window = fit_runs(measured)
        time = {"basis": "measured", "runs": len(measured), "run_overhead_seconds": overhead}
    else:
        peak = (peak_gflops or {}).get(reference.peak_dtype) if reference is not None else None
        if reference is None or not peak or peak <= 0:
            return None
        per_window = reference.seconds_per_window * reference.peak_gflops / peak
        time = {"basis": "reference", "case": reference.case}
    setup = 0.0
    if not model_loaded:
        measured_setup = store.setup_seconds(key) if store is not None else None
        setup = (
            measured_setup if measured_setup is not None else (reference.setup_seconds if reference else 0.0)
        )
    return {
        "seconds": overhead + windows * per_window + setup,
        "window_seconds": overhead + windows * per_window,
        "setup_seconds": setup,
        "seconds_per_window": per_window,
        **time,
        "device": key.device,
    }
