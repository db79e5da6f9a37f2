"""The scale case: the same mosaic through the local executor and through ``--executor dask`` on a
LocalCluster in the same benchmark process, so both see the same machine under the same load.

Recorded: the median seconds of each and their ratio (dask / local: < 1 means the cluster's workers
beat one process), each worker's peak RSS (models included: what one GPU's worker needs), whether the
pixels are identical (they must be), and the cost of assembling the parts into a COG per km²
(``timings_s.assemble`` of a ``--format cog`` run: VRT mosaic, copy, overviews).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np


def _peak_rss_bytes() -> int:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _pixels(path: Path) -> np.ndarray:
    from engine.raster.gdal_setup import gdal_module

    return gdal_module().Open(str(path)).ReadAsArray()


def run_scale_comparison(
    case, options: dict, local_seconds: list[float], local_labels: Path, workdir: Path
) -> dict:
    """Time ``options`` (the case's ``run_segment`` options) on a ``case.scale_workers``-worker
    LocalCluster against the local executor's ``local_seconds``."""
    from engine.distributed.cluster import connect
    from engine.pipeline.job import run_segment

    connection = connect(f"local:{case.scale_workers}")
    try:
        address = connection.client.scheduler.address
        out = workdir / "dask.tif"
        dask = {**options, "executor": "dask", "scheduler": address, "out": str(out), "overwrite": True}
        run_segment(dask)  # warm-up: every worker loads its models once
        seconds = []
        for _ in range(max(1, case.repeats)):
            tic = time.perf_counter()
            result = run_segment(dask)
            seconds.append(time.perf_counter() - tic)
        cog = run_segment({**dask, "out": str(workdir / "dask-cog.tif"), "output_format": "cog"})
        worker_rss = connection.client.run(_peak_rss_bytes)
    finally:
        connection.close()
    grid = result.record["output"]["size"]
    gsd = result.record["settings"]["native_gsd_m"]
    area_km2 = grid[0] * grid[1] * abs(gsd[0] * gsd[1]) / 1e6
    local, distributed = statistics.median(local_seconds), statistics.median(seconds)
    return {
        "workers": case.scale_workers,
        "local_seconds": round(local, 4),
        "dask_seconds": round(distributed, 4),
        "dask_seconds_all": [round(s, 4) for s in seconds],
        "time_ratio_dask_to_local": round(distributed / local, 4),
        "worker_peak_rss_bytes": sorted(worker_rss.values()),
        "blocks": result.record["execution"]["blocks"],
        "cog_assembly_seconds": round(cog.record["timings_s"]["assemble"], 4),
        "cog_assembly_seconds_per_km2": round(cog.record["timings_s"]["assemble"] / area_km2, 4),
        "pixels_identical": bool(np.array_equal(_pixels(out), _pixels(local_labels))),
    }
