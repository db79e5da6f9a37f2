"""GDAL as the engine uses it: exceptions on, and a block cache sized to the job, not to the machine.

GDAL's block cache defaults to 5 % of the machine's memory (1.2 GB on a 24 GB machine). The engine reads
each window about once and writes whole block rows, so a large cache only keeps blocks nobody reads
again: on a 4000² raster it added ~140 MB to the peak memory, the difference between memory that stays
flat in raster size and memory that does not. The cache is therefore capped, but never below what the
output's block rows need (a partly written compressed block that is evicted must be read back and
recompressed). A user's own ``GDAL_CACHEMAX`` (environment or config option) is left alone.
"""

from __future__ import annotations

import os

#: Block-cache size the engine sets: ample for reading windows and writing outputs ~10,000 px wide.
DEFAULT_BLOCK_CACHE_BYTES = 64 * 2**20
#: Output block rows the cache must hold at once (the current row of every output, with room to spare).
BLOCK_ROWS_KEPT = 2


def gdal_module():
    """``osgeo.gdal`` with exceptions enabled."""
    from osgeo import gdal

    gdal.UseExceptions()
    return gdal


def user_sets_block_cache() -> bool:
    gdal = gdal_module()
    return bool(os.environ.get("GDAL_CACHEMAX") or gdal.GetConfigOption("GDAL_CACHEMAX"))


def size_block_cache(output_block_row_bytes: int = 0) -> int | None:
    """Cap GDAL's block cache at DEFAULT_BLOCK_CACHE_BYTES, or at what ``BLOCK_ROWS_KEPT`` block rows of
    the outputs need if that is more. Returns the size set, or None when the user chose one."""
    if user_sets_block_cache():
        return None
    size = max(DEFAULT_BLOCK_CACHE_BYTES, BLOCK_ROWS_KEPT * int(output_block_row_bytes))
    gdal_module().SetCacheMax(size)
    return size
