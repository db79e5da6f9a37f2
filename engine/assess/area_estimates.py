"""Area-weighted accuracy and error-adjusted area (Olofsson et al. 2014, Remote Sensing of Environment
148: 42–57, "Good practices for estimating area and assessing accuracy of land change", section 4.3).

The map's classes are the strata; the assessed pixels are the sample of each stratum. With ``W_i`` the
share of the mapped area in map class i, ``n_ij`` the assessed pixels of map class i that the reference
calls j and ``n_i·`` their row total (here the *map* is the row; the report's matrices use reference
rows, so callers pass the transposed matrix):

- p̂_ij = W_i n_ij / n_i· (eq. 4); overall accuracy Ô = Σ p̂_jj; user's Û_i = n_ii / n_i·;
  producer's P̂_j = p̂_jj / p̂_·j (eq. 2, 3);
- V(Ô) = Σ W_i² Û_i (1 − Û_i) / (n_i· − 1) (eq. 5); V(Û_i) = Û_i (1 − Û_i) / (n_i· − 1) (eq. 6);
- V(P̂_j) = [N_j·² (1 − P̂_j)² Û_j (1 − Û_j) / (n_j· − 1)
            + P̂_j² Σ_{i≠j} N_i·² n_ij / n_i· (1 − n_ij / n_i·) / (n_i· − 1)] / N̂_·j²  (eq. 7),
  N_i· the mapped area of class i and N̂_·j = Σ_i N_i· n_ij / n_i·;
- area proportion p̂_·j = Σ_i W_i n_ij / n_i· (eq. 9), S(p̂_·j) = √(Σ_i (W_i p̂_ij − p̂_ij²) / (n_i· − 1))
  (eq. 10), area Â_j = A p̂_·j and S(Â_j) = A S(p̂_·j) (eq. 11); 95 % intervals ± 1.96 S.

Strata without assessed pixels cannot be estimated: callers pass them with area 0 (and report them);
a variance needing n_i· − 1 = 0 for a stratum of non-zero area is undefined (None).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Normal quantile of a two-sided 95 % interval (the paper's 1.96).
Z_95 = 1.96


def _none_if_nan(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def stratified_estimates(
    sample: np.ndarray, mapped_area: Sequence[float], names: Sequence[str], z: float = Z_95
) -> dict:
    """Olofsson's estimators from ``sample`` (q×q counts, rows = MAP class, columns = reference class)
    and ``mapped_area`` (q areas of the map's classes, any unit: the area results use the same unit).

    Returns {"overall_accuracy": {estimate, ci95}, "per_class": {name: {users_accuracy, producers_accuracy,
    area_proportion, area, each {estimate, ci95}, "mapped_area"}}, "total_area"}.
    """
    n = np.asarray(sample, dtype=np.float64)
    mapped = np.asarray(mapped_area, dtype=np.float64)
    total_area = float(mapped.sum())
    row_total = n.sum(axis=1)
    W = mapped / total_area if total_area > 0 else np.zeros_like(mapped)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(row_total[:, None] > 0, n / row_total[:, None], 0.0)  # n_ij / n_i·
        p = W[:, None] * share  # p̂_ij
        dof = np.where(row_total > 1, row_total - 1.0, np.nan)  # n_i· − 1
        users = np.where(row_total > 0, np.diag(n) / row_total, np.nan)
        overall = float(np.trace(p))
        users_var = users * (1 - users) / dof
        # Strata of no area add nothing; a stratum with area but a single pixel leaves variances undefined.
        overall_var = float(np.where(W > 0, W**2 * users_var, 0.0).sum())
        column = p.sum(axis=0)  # p̂_·j
        producers = np.where(column > 0, np.diag(p) / column, np.nan)
        column_var = np.where(W[:, None] > 0, (W[:, None] * p - p**2) / dof[:, None], 0.0)
        column_se = np.sqrt(column_var.sum(axis=0))
        estimated_reference = (mapped[:, None] * share).sum(axis=0)  # N̂_·j
    result: dict = {
        "overall_accuracy": {
            "estimate": _none_if_nan(overall),
            "ci95": _none_if_nan(z * np.sqrt(overall_var)),
        },
        "per_class": {},
        "total_area": total_area,
    }
    q = len(names)
    for j in range(q):
        others = [i for i in range(q) if i != j]
        with np.errstate(divide="ignore", invalid="ignore"):
            term_own = (
                mapped[j] ** 2 * (1 - producers[j]) ** 2 * users[j] * (1 - users[j]) / dof[j]
                if mapped[j] > 0
                else 0.0
            )
            term_others = producers[j] ** 2 * sum(
                mapped[i] ** 2 * share[i, j] * (1 - share[i, j]) / dof[i] for i in others if mapped[i] > 0
            )
            producers_var = (term_own + term_others) / estimated_reference[j] ** 2
        result["per_class"][names[j]] = {
            "mapped_area": float(mapped[j]),
            "users_accuracy": {
                "estimate": _none_if_nan(users[j]),
                "ci95": _none_if_nan(z * np.sqrt(users_var[j])),
            },
            "producers_accuracy": {
                "estimate": _none_if_nan(producers[j]),
                "ci95": _none_if_nan(z * np.sqrt(producers_var)),
            },
            "area_proportion": {
                "estimate": _none_if_nan(column[j]),
                "ci95": _none_if_nan(z * column_se[j]),
            },
            "area": {
                "estimate": _none_if_nan(column[j] * total_area),
                "ci95": _none_if_nan(z * column_se[j] * total_area),
            },
        }
    return result
