"""Peak memory of ``evaluate`` as the raster grows: the same small tile pair mosaicked (VRT) into a
2,000² and a 20,000² map/reference pair, each assessed in a fresh process; the peak resident size
(VmHWM) must not follow the pixel count (windowed reads, a block at a time).

``python -m engine.bench.assess_memory [--edges 2000 20000] [--out FILE.jsonl]``
Measured on the 2-core build machine (resources/bench/results_assess_memory.jsonl): 2,000² 143 MB,
20,000² 150 MB peak for 100× the pixels; 57 s for the 20,000² pair.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TILE = 500  # pixels per side of the tile the mosaics repeat
NAMES = ["building", "road", "water", "tree"]


def write_pair(folder: Path, edge: int) -> tuple[Path, Path]:
    """A class map and a label reference of ``edge``² pixels (1 m, UTM 32N) as VRT mosaics of one tile."""
    import numpy as np
    from osgeo import gdal, osr

    gdal.UseExceptions()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    tiles = {}
    for kind, high in (("map", len(NAMES) + 1), ("ref", len(NAMES) + 2)):
        path = folder / f"{kind}_tile.tif"
        if not path.exists():
            ds = gdal.GetDriverByName("GTiff").Create(str(path), TILE, TILE, 1, gdal.GDT_Byte, ["TILED=YES"])
            ds.SetGeoTransform((0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
            ds.SetProjection(srs.ExportToWkt())
            ds.GetRasterBand(1).WriteArray(rng.integers(0, high, (TILE, TILE)).astype(np.uint8))
            ds = None
        tiles[kind] = path
    repeats = -(-edge // TILE)
    outputs = []
    for kind in ("map", "ref"):
        lines = [
            f'<VRTDataset rasterXSize="{edge}" rasterYSize="{edge}">',
            f"<SRS>{srs.ExportToWkt()}</SRS>",
            "<GeoTransform>400000, 1, 0, 5600000, 0, -1</GeoTransform>",
            '<VRTRasterBand dataType="Byte" band="1">',
        ]
        if kind == "map":
            lines.append(
                "<CategoryNames>" + "".join(f"<Category>{n}</Category>" for n in ["unclassified", *NAMES])
            )
            lines.append("</CategoryNames>")
        for row in range(repeats):
            for col in range(repeats):
                lines.append(
                    f'<SimpleSource><SourceFilename relativeToVRT="1">{tiles[kind].name}</SourceFilename>'
                    f'<SourceBand>1</SourceBand><SrcRect xOff="0" yOff="0" xSize="{TILE}" ySize="{TILE}"/>'
                    f'<DstRect xOff="{col * TILE}" yOff="{row * TILE}" xSize="{TILE}" ySize="{TILE}"/>'
                    "</SimpleSource>"
                )
        lines += ["</VRTRasterBand>", "</VRTDataset>"]
        path = folder / f"{kind}_{edge}.vrt"
        path.write_text("\n".join(lines), encoding="utf-8")
        outputs.append(path)
    return outputs[0], outputs[1]


_CHILD = """
import json, re, sys, time
from engine.assess import evaluate_map
tic = time.perf_counter()
report = evaluate_map(sys.argv[1], sys.argv[2], report=sys.argv[3])
seconds = time.perf_counter() - tic
status = open("/proc/self/status").read()
peak = int(re.search(r"^VmHWM:\\s+(\\d+)", status, re.M).group(1)) * 1024
print(json.dumps({"peak_rss_bytes": peak, "seconds": seconds, "assessed_pixels": report["assessed_pixels"]}))
"""


def measure(edge: int, folder: Path) -> dict:
    """Peak RSS (bytes) and seconds of one evaluate of an ``edge``² pair in a fresh interpreter."""
    prediction, reference = write_pair(folder, edge)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(prediction), str(reference), str(folder / f"report_{edge}.json")],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return {"edge": edge, **json.loads(done.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--out", help="append the results as JSON lines to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rs-ovseg-assess-bench-") as folder:
        results = [measure(edge, Path(folder)) for edge in args.edges]
    for result in results:
        result["case"] = "evaluate_peak_rss"
        result["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        print(json.dumps(result))
        if args.out:
            with open(args.out, "a", encoding="utf-8") as stream:
                stream.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
