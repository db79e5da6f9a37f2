"""Device choice (auto|cpu|cuda|mps) and a crop batch size that fits the device's free memory."""

from __future__ import annotations

import os

from engine.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
# Fraction of free memory the crop batch may plan to use; the rest is for the model, buffers, other apps.
MEMORY_FRACTION = 0.4
MAX_BATCH = 64
# Used when a method does not say how much memory one crop needs: a 512-channel 224² float32 feature
# map after upsampling is ~100 MB, and the attention/upsampler temporaries roughly double it.
DEFAULT_BYTES_PER_CROP = 256 * 2**20


def resolve_device(name: str = "auto") -> str:
    """``auto`` → cuda if present, else mps, else cpu; an explicit device must exist."""
    import torch

    if name not in DEVICE_CHOICES:
        raise UserError(f"unknown device {name!r}: use one of {', '.join(DEVICE_CHOICES)}")
    mps_ok = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible to PyTorch (use --device auto or cpu)")
    if name == "mps" and not mps_ok:
        raise UserError("--device mps: Apple's Metal backend is not available (use --device auto or cpu)")
    return name


def configure_determinism(device: str, seed: int = 0) -> None:
    """Seed torch; on the CPU ask for deterministic kernels so repeated runs give identical rasters."""
    import torch

    torch.manual_seed(seed)
    if device == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        # That mode also fills every new tensor with NaN (a debugging aid against reads of uninitialised
        # memory, not needed for identical results): ~15 % of a SegEarth-OV tile's time on the CPU.
        torch.utils.deterministic.fill_uninitialized_memory = False


def free_memory_bytes(device: str) -> int:
    """Memory available for new allocations on ``device`` (host RAM for cpu and mps)."""
    if device == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def choose_batch_size(device: str, bytes_per_crop: int | None = None, requested: int | None = None) -> int:
    """Crops per model call: ``requested`` if given, else as many as fit in a share of free memory."""
    if requested is not None:
        if requested < 1:
            raise UserError(f"batch size must be at least 1, got {requested}")
        return requested
    per_crop = bytes_per_crop or DEFAULT_BYTES_PER_CROP
    fit = int(free_memory_bytes(device) * MEMORY_FRACTION // per_crop)
    if device == "cpu":
        # On the CPU a large batch buys nothing (the cores are busy at batch 1-4) and costs memory.
        fit = min(fit, 4)
    return max(1, min(MAX_BATCH, fit))


def is_out_of_memory(error: BaseException) -> bool:
    """True for a GPU out-of-memory error (the pipeline then halves its batch and retries)."""
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(error, oom)) or "out of memory" in str(error).lower()


def device_report() -> dict:
    """Interpreter-independent facts about the compute devices (for ``info`` and the sidecar)."""
    import torch

    report: dict = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "gpus": []}
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            report["gpus"].append({"name": props.name, "memory_bytes": int(props.total_memory)})
    mps = getattr(torch.backends, "mps", None)
    report["mps_available"] = bool(mps is not None and mps.is_available())
    report["cpu_threads"] = torch.get_num_threads()
    return report


def peak_memory(device: str = "cpu") -> dict:
    """Peak resident memory of this process (bytes) and, on CUDA, peak tensor memory allocated."""
    report: dict = {"rss_bytes": None}
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report["rss_bytes"] = int(peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes
    except ImportError:  # Windows
        pass
    if device == "cuda":
        import torch

        report["cuda_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
    return report
