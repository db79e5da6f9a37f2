"""A diagnostics report of this engine environment, for ``python -m engine info`` and the plugin's
"Test engine" button: something a user can paste into a bug report."""

from __future__ import annotations

import platform
import sys

from engine import __version__


def _module_version(name: str) -> str | None:
    try:
        module = __import__(name)
    except ImportError:
        return None
    return getattr(module, "__version__", "present")


def weights_present() -> list[dict]:
    """Every registry entry with where its file was found ("cache" / "offline") or None."""
    from engine.models.cache import is_cached
    from engine.models.registry import all_entries

    return [{"name": e.name, "kind": e.kind, "present": is_cached(e)} for e in all_entries()]


def engine_report() -> dict:
    """Interpreter, package versions, compute devices (with GPU memory) and weights present."""
    from engine.compat import torchvision_ops
    from engine.models.cache import cache_dir
    from engine.runtime.allocator import heap_policy
    from engine.runtime.device import device_report
    from engine.runtime.onednn_linear import onednn_linear_available

    report = {
        "engine_version": __version__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
    }
    for name in ("numpy", "torch", "torchvision", "open_clip", "segment_anything"):
        report[f"{name}_version"] = _module_version(name)
    report["torchvision_ops"] = torchvision_ops.mode()
    report["cpu_fp32_linear"] = "onednn" if onednn_linear_available() else "torch default"
    report["heap_policy"] = heap_policy()
    try:
        from osgeo import gdal

        report["gdal_version"] = gdal.__version__
    except ImportError:
        report["gdal_version"] = None
    report.update(device_report())
    if report["gpus"]:
        import torch

        free, total = torch.cuda.mem_get_info()
        report["gpu_memory_free_bytes"], report["gpu_memory_total_bytes"] = int(free), int(total)
    report["weights_cache"] = str(cache_dir())
    from engine.clip.text_store import default_text_store

    text_store = default_text_store()
    report["text_embeddings_cache"] = str(text_store.folder) if text_store else None
    report["weights"] = weights_present()
    return report
