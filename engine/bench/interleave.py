"""Cost ratios from interleaved runs: reference, case, reference, case, … each in its own interpreter.

On a shared machine other load comes and goes over minutes. A case's timed runs can fall in a quiet
stretch and its reference's in a busy one: on the 2-core build machine the ratio of two cases' medians
moved by 10-20 % between complete runs of the same code. Alternating single timed runs of the two
cases (each after its own warm-up) exposes both to the same stretches; the median of the per-pair
ratios is the steadier figure.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import replace

from engine.bench.cases import BenchCase


def interleaved_cost_ratio(
    reference: BenchCase, case: BenchCase, pairs: int, seconds_per_km2: Callable[[BenchCase], float]
) -> dict:
    """``pairs`` alternations of one timed run of ``reference`` then one of ``case``; the record holds
    each pair's ratio of seconds per km² (case over reference) and their median.

    ``seconds_per_km2(c)`` runs ``c`` (given with ``repeats=1``) and returns its seconds per km²."""
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1 (got {pairs})")
    ratios, theirs, own = [], [], []
    for _ in range(pairs):
        theirs.append(seconds_per_km2(replace(reference, repeats=1)))
        own.append(seconds_per_km2(replace(case, repeats=1)))
        ratios.append(own[-1] / theirs[-1])
    return {
        "case": f"{case.name}/interleaved",
        "cost_relative_to": reference.name,
        "pairs": pairs,
        "seconds_per_km2": [round(s, 4) for s in own],
        "reference_seconds_per_km2": [round(s, 4) for s in theirs],
        "cost_per_km2_ratios": [round(r, 3) for r in ratios],
        "cost_per_km2_ratio": round(statistics.median(ratios), 3),
    }
