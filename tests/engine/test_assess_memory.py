"""evaluate's memory follows its block, not the raster: a 4,000² pair peaks within a few MB of a 1,000²
pair (16× the pixels; a whole-raster read of the 4,000² reference as int64 codes alone would be 128 MB).
Peak resident sizes of fresh processes (engine.bench.assess_memory), not timings."""

from __future__ import annotations

from engine.bench.assess_memory import measure

MiB = 2**20


def test_peak_rss_does_not_follow_the_pixel_count(tmp_path):
    small = measure(1000, tmp_path)
    large = measure(4000, tmp_path)
    assert large["assessed_pixels"] > 15 * small["assessed_pixels"] * 0.9
    assert large["peak_rss_bytes"] - small["peak_rss_bytes"] < 24 * MiB, (small, large)
