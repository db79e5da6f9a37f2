"""The panel's plain-words lines for the engine's estimate: output, model grid, expected time."""

from __future__ import annotations

from rs_ovseg_qgis.core.estimate import (
    area_text,
    duration_text,
    ground_text,
    model_text,
    output_text,
    time_text,
)

ESTIMATE = {
    "output_size": [1000, 1000],
    "native_gsd": [0.5, 0.5],
    "georeferenced": True,
    "working_size": [446, 446],
    "working_gsd": 1.12,
    "tiles": 1,
    "crops": 9,
    "crop_evaluations": 9,
}


def test_durations_are_rounded_as_an_estimate_deserves():
    assert [duration_text(s) for s in (0.2, 4.4, 44, 89, 91, 150, 3599)] == [
        "1 s",
        "4 s",
        "40 s",
        "90 s",
        "2 min",
        "2 min",
        "1 h",
    ]
    assert duration_text(3600 + 20 * 60) == "1 h 20 min" and duration_text(2 * 3600) == "2 h"


def test_ground_is_told_in_metres_kilometres_hectares_and_square_kilometres():
    assert area_text(250_000) == "25.0 ha" and area_text(4_000_000) == "4.00 km²"
    assert ground_text(500, 12_500) == "500 m × 12 km (6.25 km²)"
    assert ground_text(2000, 2000) == "2.0 km × 2.0 km (4.00 km²)"


def test_the_output_and_the_model_grid_are_two_separate_lines():
    assert output_text(ESTIMATE) == "1,000 × 1,000 px at 0.5 m/px, 500 m × 500 m (25.0 ha)"
    assert model_text(ESTIMATE) == "446 × 446 px, 9 windows of the model"
    wide = {**ESTIMATE, "tiles": 4, "crop_evaluations": 1}
    assert model_text(wide) == "446 × 446 px, 1 window of the model in 4 tiles"
    plain = {**ESTIMATE, "georeferenced": False}
    assert output_text(plain) == "1,000 × 1,000 px (the input has no georeferencing)"


def test_the_time_says_where_its_speed_comes_from_and_what_loading_takes():
    measured = {"seconds": 31.0, "setup_seconds": 0.0, "basis": "measured", "runs": 2, "device": "cpu"}
    assert time_text({**ESTIMATE, "time": measured}) == "about 30 s on the CPU (speed measured here)"
    reference = {"seconds": 400.0, "setup_seconds": 12.0, "basis": "reference", "device": "cuda"}
    assert time_text({**ESTIMATE, "time": reference}) == (
        "roughly 7 min on the GPU (CUDA), 10 s of it loading the model (benchmark speed scaled to it)"
    )
    assert time_text({**ESTIMATE, "time": None}) == "not known yet: the first run here measures it"
