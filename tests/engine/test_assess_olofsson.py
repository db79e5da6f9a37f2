"""Olofsson et al. (2014) estimators against the paper's own numerical example.

Source: P. Olofsson, G. M. Foody, M. Herold, S. V. Stehman, C. E. Woodcock, M. A. Wulder, "Good practices
for estimating area and assessing accuracy of land change", Remote Sensing of Environment 148 (2014)
42–57, section 5 (the worked example): Table 8 (error matrix of sample counts, map classes in rows,
map areas in 30 m Landsat pixels). The expected estimates are quoted at the paper's rounding (accuracies
to two decimals, areas to the hectare) as an independent implementation publishes them beside the same
table (github.com/carmengg/accuracy-assessment-implementation, notebook "accuracy_metrics_step_by_step",
"Olofsson et al. Table 8"); the deforestation area 21,158 ± 6,158 ha is the figure the paper's example is
known for, and a second implementation's documentation (an R package's dft_accuracy_estimate example)
quotes the same 21,158 ha. The paper's PDF itself was not reachable from here.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.assess.area_estimates import stratified_estimates

CLASSES = ["deforestation", "forest gain", "stable forest", "stable non-forest"]
# Table 8: rows = map class, columns = reference class (sample counts).
SAMPLE = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
MAPPED_PIXELS = np.array([200_000, 150_000, 3_200_000, 6_450_000])
PIXEL_HA = 0.09  # 30 m × 30 m
# Published estimates: (estimate, half-width of the 95 % confidence interval).
AREA_HA = {
    "deforestation": (21_158, 6_158),
    "forest gain": (11_686, 3_756),
    "stable forest": (285_770, 15_510),
    "stable non-forest": (581_386, 16_282),
}
USERS = {
    "deforestation": (0.88, 0.07),
    "forest gain": (0.73, 0.10),
    "stable forest": (0.93, 0.04),
    "stable non-forest": (0.96, 0.02),
}
PRODUCERS = {
    "deforestation": (0.75, 0.21),
    "forest gain": (0.85, 0.25),
    "stable forest": (0.93, 0.03),
    "stable non-forest": (0.96, 0.02),
}
OVERALL = (0.95, 0.02)


def test_paper_example():
    result = stratified_estimates(SAMPLE, MAPPED_PIXELS * PIXEL_HA, CLASSES)
    assert result["total_area"] == pytest.approx(900_000)
    assert result["overall_accuracy"]["estimate"] == pytest.approx(OVERALL[0], abs=0.005)
    assert result["overall_accuracy"]["ci95"] == pytest.approx(OVERALL[1], abs=0.005)
    for name in CLASSES:
        figures = result["per_class"][name]
        assert figures["area"]["estimate"] == pytest.approx(AREA_HA[name][0], abs=0.5)
        assert figures["area"]["ci95"] == pytest.approx(AREA_HA[name][1], abs=0.5)
        assert figures["users_accuracy"]["estimate"] == pytest.approx(USERS[name][0], abs=0.005)
        assert figures["users_accuracy"]["ci95"] == pytest.approx(USERS[name][1], abs=0.005)
        assert figures["producers_accuracy"]["estimate"] == pytest.approx(PRODUCERS[name][0], abs=0.005)
        assert figures["producers_accuracy"]["ci95"] == pytest.approx(PRODUCERS[name][1], abs=0.005)
        assert figures["mapped_area"] == pytest.approx(MAPPED_PIXELS[CLASSES.index(name)] * PIXEL_HA)


def test_unsampled_stratum_adds_nothing_and_single_pixel_strata_have_no_interval():
    sample = np.array([[3, 1, 0], [0, 0, 0], [1, 0, 4]])  # stratum 2 has no assessed pixel
    result = stratified_estimates(sample, [10.0, 0.0, 30.0], ["a", "b", "c"])
    assert result["total_area"] == 40.0
    # Area of "a": 10 · 3/4 + 30 · 1/5 = 13.5, by hand.
    assert result["per_class"]["a"]["area"]["estimate"] == pytest.approx(13.5)
    assert result["overall_accuracy"]["estimate"] == pytest.approx(0.25 * 0.75 + 0.75 * 0.8)
    single = stratified_estimates(np.array([[1, 0], [0, 5]]), [1.0, 1.0], ["a", "b"])
    assert single["overall_accuracy"]["ci95"] is None
