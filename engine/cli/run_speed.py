"""The worker's side of the run-time estimate: which speed applies to a request, where it is kept, and
this device's matmul speed for the reference (engine.pipeline.run_time holds the arithmetic).

Measurements live in ``RS_OVSEG_SPEED_FILE`` if set (``off``: none kept), else in
``<engine home>/window-speed.json`` (``RS_OVSEG_HOME``, engine.models.cache); the matmul speed is measured
once per process and float type, in about a tenth of a second.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from engine.errors import UserError
from engine.pipeline.run_time import (
    SPEED_FILE_NAME,
    SpeedKey,
    SpeedStore,
    expected_run_time,
    reference_for,
    setup_seconds_of_run,
    windows_of_run,
)

log = logging.getLogger("engine.worker")

SPEED_FILE_ENV = "RS_OVSEG_SPEED_FILE"
#: Seconds of timed products per matmul measurement (engine.bench.peak; 3 bursts, best one kept).
PEAK_SECONDS = 0.1
_peaks: dict[tuple[str, str], float] = {}


def speed_store() -> SpeedStore | None:
    """The store in ``RS_OVSEG_SPEED_FILE`` (``off``: none), else in the engine's home folder."""
    setting = os.environ.get(SPEED_FILE_ENV, "").strip()
    if setting.lower() in ("off", "0", "none", "false"):
        return None
    if setting:
        return SpeedStore(Path(setting).expanduser())
    from engine.models.cache import home_dir

    return SpeedStore(home_dir() / SPEED_FILE_NAME)


def speed_key(args: Mapping) -> SpeedKey:
    """The key of a request's raw ``segment``/``estimate`` arguments (defaults as ``segment``'s).
    Raises UserError for a device that is not there."""
    from engine.runtime.device import resolve_device
    from engine.runtime.precision import resolve_dtype

    method = str(args.get("method") or "segearth-ov")
    device = resolve_device(str(args.get("device") or "auto"))
    dtype = str(resolve_dtype(args.get("dtype") or "auto", device)).removeprefix("torch.")
    sam = str(args.get("sam") or "") if method == "reseg-clip" else ""
    if method == "segearth-ov3":  # the tiny test architecture must not pass for the full model's speed
        sam = "" if str(args.get("sam3_config") or "full") == "full" else str(args["sam3_config"])
    if method == "aeroseg":  # a tiny model must not pass for the full one, nor blocks for plain windows
        from engine.methods.aeroseg.spec import speed_name

        sam = speed_name(args)
    return SpeedKey(method, device, dtype, str(args.get("clip") or ""), sam)


def matmul_gflops(device: str, dtype: str) -> float:
    """This device's dense matmul GFLOP/s in ``dtype`` (measured once per process)."""
    if (device, dtype) not in _peaks:
        import torch

        from engine.bench.peak import measure_matmul_peak

        size = 2048 if device == "cpu" else None  # bench's bf16 size runs for seconds without bf16 units
        peak = measure_matmul_peak(device, getattr(torch, dtype), size, seconds=PEAK_SECONDS, bursts=3)
        _peaks[(device, dtype)] = peak.gflops
    return _peaks[(device, dtype)]


def estimate_time(
    args: Mapping, windows: int, warm: set[str] | None = None, store: SpeedStore | None = None
) -> dict | None:
    """The ``time`` entry of an estimate (engine.pipeline.run_time.expected_run_time), or None.
    ``warm``: the keys (SpeedKey.text) whose models this process holds loaded (no setup then)."""
    try:
        key = speed_key(args)
    except UserError:
        return None  # the estimate itself reports sizes; a missing device shows when the run starts
    store = store or speed_store()
    peaks = None
    reference = reference_for(key)
    if (store is None or not store.runs(key)) and reference is not None:
        peaks = {reference.peak_dtype: matmul_gflops(key.device, reference.peak_dtype)}
    return expected_run_time(key, windows, store, peaks, model_loaded=key.text() in (warm or ()))


def remember_run(
    args: Mapping, record: Mapping, warm: set[str] | None = None, store: SpeedStore | None = None
) -> None:
    """Add a finished run's seconds per window and setup to the store (never fails the run); its key
    joins ``warm`` (the process now holds that model)."""
    measured = windows_of_run(dict(record))
    if measured is None:
        return
    try:
        key = speed_key(args)
    except UserError:
        return
    if warm is not None:
        warm.add(key.text())
    store = store or speed_store()
    if store is not None:
        store.add(key, *measured, setup_seconds_of_run(dict(record)))
    log.debug("run speed: %d windows in %.3f s for %s", *measured, key.text())
