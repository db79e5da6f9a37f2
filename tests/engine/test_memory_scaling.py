"""Peak memory follows the read-tile size, not the raster size.

Two subprocesses segment a synthetic VRT mosaic (one small GeoTIFF repeated), one 16× larger in pixels
than the other, with a trivial per-pixel method; their peak RSS must be about the same. Holding the
large raster, its working image or its logits in memory would add well over 50 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

gdal.UseExceptions()
ROOT = Path(__file__).resolve().parents[2]
PIECE = 256

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    torch.set_num_threads(1)
    from osgeo import gdal
    gdal.SetCacheMax(8 * 2**20)  # GDAL's block cache is bounded explicitly, as in any long run
    from engine.pipeline.segment import PipelineSettings, SegmentRequest, prepare, segment
    from engine.vocabulary import build_vocabulary

    class PixelMethod:
        name = "pixel-test"; crop_size = 32; crop_stride = 16
        def set_queries(self, queries):
            self.w = torch.randn(len(queries), 3, generator=torch.Generator().manual_seed(0))
        def crop_logits(self, crops):
            return torch.einsum("qc,bchw->bqhw", self.w, crops.float() / 255)
        def describe(self):
            return {"method": self.name}

    src, out = sys.argv[1], sys.argv[2]
    settings = PipelineSettings(tile_working=96, score_pixels=64 * 96, batch_size=16)
    vocabulary = build_vocabulary(["a", "b", "c", "d"])
    prepared = prepare(SegmentRequest(input=src, out=out, confidence=out + ".conf.tif"), 32, 16, settings)
    result = segment(prepared, vocabulary, PixelMethod(), settings=settings)
    print(json.dumps({"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "tiles": result.record["windows"]["tiles"], "size": result.record["output"]["size"]}))
    """
)


def mosaic(folder: Path, repeats: int) -> str:
    piece = folder / "piece.tif"
    if not piece.exists():
        ds = gdal.GetDriverByName("GTiff").Create(str(piece), PIECE, PIECE, 3, gdal.GDT_Byte)
        rng = np.random.default_rng(0)
        for i in range(3):
            ds.GetRasterBand(i + 1).WriteArray(rng.integers(0, 256, (PIECE, PIECE), dtype=np.uint8))
        ds = None
    size = PIECE * repeats
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    sources = "".join(
        f"<SimpleSource><SourceFilename relativeToVRT='1'>piece.tif</SourceFilename>"
        f"<SourceBand>{band}</SourceBand>"
        f"<SrcRect xOff='0' yOff='0' xSize='{PIECE}' ySize='{PIECE}'/>"
        f"<DstRect xOff='{x * PIECE}' yOff='{y * PIECE}' xSize='{PIECE}' ySize='{PIECE}'/></SimpleSource>"
        for x in range(repeats)
        for y in range(repeats)
        for band in [None]
    )
    bands = "".join(
        f"<VRTRasterBand dataType='Byte' band='{b}'>{sources.replace('None', str(b))}</VRTRasterBand>"
        for b in (1, 2, 3)
    )
    wkt = srs.ExportToWkt().replace('"', "&quot;")
    path = folder / f"mosaic_{repeats}.vrt"
    path.write_text(
        f"<VRTDataset rasterXSize='{size}' rasterYSize='{size}'><SRS>{wkt}</SRS>"
        f"<GeoTransform>400000, 0.5, 0, 5600000, 0, -0.5</GeoTransform>{bands}</VRTDataset>"
    )
    return str(path)


def run(src: str, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the machine is shared: no spinning thread pools
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, src, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_peak_memory_does_not_grow_with_raster_size(tmp_path):
    small = run(mosaic(tmp_path, 4), tmp_path / "small.tif")  # 1024 x 1024: several full tiles
    large = run(mosaic(tmp_path, 16), tmp_path / "large.tif")  # 4096 x 4096: 16x the pixels
    assert small["size"] == [1024, 1024] and large["size"] == [4096, 4096]
    assert large["tiles"] > 4 * small["tiles"]
    grown = large["rss"] - small["rss"]
    assert grown < 20 * 2**20, f"peak RSS grew by {grown / 2**20:.1f} MB for 16x the pixels"
    labels = gdal.Open(str(tmp_path / "large.tif")).ReadAsArray(0, 0, 512, 512)
    assert labels.max() > 0
