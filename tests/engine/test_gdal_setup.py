"""engine.raster.gdal_setup: GDAL's block cache is sized to the job unless the user sized it."""

import pytest
from osgeo import gdal

from engine.raster.gdal_setup import DEFAULT_BLOCK_CACHE_BYTES, size_block_cache
from engine.raster.writer import block_row_bytes


@pytest.fixture
def restore_cache(monkeypatch):
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    before = gdal.GetCacheMax()
    yield
    gdal.SetCacheMax(before)


def test_cache_is_capped_for_ordinary_outputs(restore_cache):
    gdal.SetCacheMax(1 << 30)
    assert size_block_cache(block_row_bytes(4000, with_confidence=True)) == DEFAULT_BLOCK_CACHE_BYTES
    assert gdal.GetCacheMax() == DEFAULT_BLOCK_CACHE_BYTES


def test_cache_holds_two_block_rows_of_a_very_wide_output(restore_cache):
    row = block_row_bytes(100_000, with_confidence=True)
    assert row == 256 * 100_000 * 5  # uint8 classes + float32 confidence, 256-px blocks
    assert size_block_cache(row) == 2 * row
    assert gdal.GetCacheMax() == 2 * row


def test_a_users_gdal_cachemax_is_left_alone(restore_cache, monkeypatch):
    gdal.SetCacheMax(123 * 2**20)
    monkeypatch.setenv("GDAL_CACHEMAX", "123")
    assert size_block_cache(block_row_bytes(4000, with_confidence=False)) is None
    assert gdal.GetCacheMax() == 123 * 2**20
