"""Whether a SegEarth-OV3 request's SAM 3 weights are at hand, for the estimate (the plugin then offers
the download before a run would fail on it). Torch-free."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def missing_weights(extra: Mapping, random_weights: bool, offline_dir=None) -> list[dict]:
    """[] when the run needs no download (random weights, a local file, or the registry's file found in
    the cache or an offline folder); else one entry per registry weight to fetch: name, licence,
    gated, access (the page where access is requested) and size (bytes or None)."""
    from engine.models import cache, registry

    spec = extra.get("sam3")
    if random_weights or (spec and Path(str(spec)).expanduser().exists()):
        return []
    name = str(spec) if spec and registry.is_known(str(spec)) else registry.default_name("sam3")
    entry = registry.get_entry(name, "sam3")
    if cache.is_cached(entry, offline_dir):
        return []
    return [
        {
            "name": entry.name,
            "licence": entry.licence,
            "gated": entry.gated,
            "access": entry.access,
            "size": entry.size,
        }
    ]
