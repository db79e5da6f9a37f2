"""Accuracy assessment: a class raster against reference labels (``evaluate_map``), and the published
benchmark protocols (``engine.assess.reproduce``). See resources/docs/accuracy.md."""

from __future__ import annotations


def evaluate_map(*args, **kwargs) -> dict:
    """See engine.assess.evaluate.evaluate_map (imported on first use: GDAL and numpy only)."""
    from .evaluate import evaluate_map as run

    return run(*args, **kwargs)


__all__ = ["evaluate_map"]
