"""``evaluate_map``: one class raster against one reference, every figure in one report.

Flow: check the outputs (never an input, never each other), read the map's classes, open the reference
on the map's grid, match classes, accumulate the confusion matrix block by block (progress, cancel),
derive the figures and the area estimates, write the report (and CSV, PNG) through temporary files.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np

from engine import __version__
from engine.errors import UserError
from engine.pipeline.progress import CancelToken, ProgressEvent, ignore_progress
from engine.raster import grid as grids
from engine.raster.gdal_setup import gdal_module, size_block_cache
from engine.raster.output_paths import ensure_outputs_safe
from engine.vocabulary import UNCLASSIFIED_NAME

from . import area_estimates, metrics
from .confusion import BLOCK, ConfusionCounts, add_block, map_value_lookup
from .correspondence import build_correspondence, load_mapping
from .map_classes import open_map, read_map_classes
from .outputs import write_outputs
from .pixel_area import SQUARE_METRES_PER_HECTARE, row_areas
from .reference import TargetGrid, opened_reference


def file_sha256(path: str, chunk: int = 4 * 2**20) -> str | None:
    """SHA-256 of a file's bytes (None for something that is not a plain file)."""
    if not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _open_map(prediction: str):
    gdal = gdal_module()
    dataset = open_map(prediction)
    band = dataset.GetRasterBand(1)
    if band.DataType not in (gdal.GDT_Byte, gdal.GDT_UInt16):
        raise UserError(f"{prediction} is not a class raster (8- or 16-bit unsigned integers expected)")
    return dataset, band


def _target(dataset, bbox, bbox_crs) -> tuple[TargetGrid, bool]:
    gt = dataset.GetGeoTransform(can_return_null=True)
    wkt = dataset.GetProjection() or ""
    georeferenced = gt is not None and bool(wkt)
    size = (dataset.RasterXSize, dataset.RasterYSize)
    window = grids.PixelWindow(0, 0, *size)
    if bbox is not None:
        if not georeferenced:
            raise UserError("--bbox needs a georeferenced map")
        window, _ = grids.window_from_bbox(gt, wkt, size, bbox, bbox_crs)
    shifted = None
    if georeferenced:
        shifted = (
            gt[0] + window.xoff * gt[1] + window.yoff * gt[2],
            gt[1],
            gt[2],
            gt[3] + window.xoff * gt[4] + window.yoff * gt[5],
            gt[4],
            gt[5],
        )
    target = TargetGrid(
        window.xoff, window.yoff, window.width, window.height, shifted, wkt if georeferenced else ""
    )
    return target, georeferenced


def evaluate_map(
    prediction: str,
    reference: str,
    *,
    reference_field: str | None = None,
    mapping: str | dict | None = None,
    ignore: list[int] | None = None,
    bbox: list[float] | None = None,
    bbox_crs: str | None = None,
    report: str | None = None,
    csv: str | None = None,
    plot: str | None = None,
    progress=None,
    cancel=None,
) -> dict:
    """Assess ``prediction`` (a class raster from ``segment``) against ``reference`` (label raster or
    polygons); returns the report (see resources/docs/accuracy.md) and writes the files asked for."""
    progress = progress or ignore_progress
    cancel = cancel or CancelToken()
    started = time.perf_counter()
    prediction, reference = str(prediction), str(reference)
    outputs = {"--report": report, "--csv": csv, "--plot": plot}
    ensure_outputs_safe([prediction, reference], outputs)
    _check_folders(outputs)
    progress(ProgressEvent(0.0, "open", "reading the map's classes"))
    mapping_data = load_mapping(mapping)
    ignore = [int(v) for v in (ignore or [])]
    map_classes = read_map_classes(prediction)
    size_block_cache()  # GDAL's cache capped as for segment: blocks are read once
    dataset, band = _open_map(prediction)
    target, georeferenced = _target(dataset, bbox, bbox_crs)
    map_nodata = band.GetNoDataValue()
    progress(ProgressEvent(0.01, "open", "bringing the reference onto the map's grid"))
    with opened_reference(
        reference, target, (dataset.RasterXSize, dataset.RasterYSize), reference_field
    ) as ref:
        correspondence = build_correspondence(map_classes, ref.names, mapping_data, ignore)
        k = len(correspondence.names)
        unclassified = k - 1
        counts = ConfusionCounts(k)
        lookup = map_value_lookup({c.value: i for i, c in enumerate(map_classes.classes)}, unclassified)
        blocks = [(x, y) for y in range(0, target.height, BLOCK) for x in range(0, target.width, BLOCK)]
        for done, (x, y) in enumerate(blocks):
            cancel.check()
            w, h = min(BLOCK, target.width - x), min(BLOCK, target.height - y)
            values = band.ReadAsArray(target.xoff + x, target.yoff + y, w, h)
            valid = np.ones(values.shape, bool) if map_nodata is None else values != map_nodata
            codes = ref.read(x, y, w, h)
            areas = row_areas(target.geotransform, target.projection_wkt, y, h) if georeferenced else None
            add_block(counts, values, valid, codes, lookup, correspondence, areas)
            progress(
                ProgressEvent(
                    0.02 + 0.93 * (done + 1) / len(blocks), "assess", f"block {done + 1}/{len(blocks)}"
                )
            )
        inputs = _inputs_section(prediction, reference, ref, map_classes, target, bbox, bbox_crs)
        result = _report(ref, correspondence, counts, georeferenced, ignore, inputs)
    dataset = None
    cancel.check()
    progress(ProgressEvent(0.96, "write", "writing the report"))
    result["timings_s"] = {"total": time.perf_counter() - started}
    write_outputs(result, report_path=report, csv=csv, plot=plot)
    progress(ProgressEvent(1.0, "done", f"overall accuracy {_percent(result['overall_accuracy'])}"))
    return result


def _percent(value) -> str:
    return "undefined" if value is None else f"{100 * value:.1f} %"


def _check_folders(outputs: dict) -> None:
    for label, path in outputs.items():
        if not path:
            continue
        folder = Path(path).expanduser().resolve().parent
        if not folder.is_dir():
            raise UserError(f"{label}: the folder {folder} does not exist")
        if Path(path).is_dir():
            raise UserError(f"{label}: {path} is a folder, give a file name")


def _kept_classes(counts: ConfusionCounts, names: list[str]) -> list[int]:
    """Class indices shown: every map class, and "unclassified" only when the assessment met it."""
    last = len(names) - 1
    shown = list(range(last))
    if counts.pixels[last, :].sum() or counts.pixels[:, last].sum():
        shown.append(last)
    return shown


def _inputs_section(prediction, reference, ref, map_classes, target: TargetGrid, bbox, bbox_crs) -> dict:
    """The report's ``inputs``: which files were assessed (paths, checksums) and over which window."""
    return {
        "prediction": {
            "path": str(Path(prediction).resolve()),
            "sha256": file_sha256(prediction),
            "classes_from": map_classes.source,
            "sidecar": map_classes.sidecar,
            "window": {
                "xoff": target.xoff,
                "yoff": target.yoff,
                "width": target.width,
                "height": target.height,
            },
            "bbox": bbox,
            "bbox_crs": bbox_crs,
        },
        "reference": {
            "path": str(Path(reference).resolve()),
            "sha256": file_sha256(reference),
            "kind": ref.kind,
            "onto_map_grid": ref.how,
            "field": ref.field_name,
        },
    }


def _report(ref, correspondence, counts, georeferenced, ignore, inputs: dict) -> dict:
    names_all = correspondence.names
    kept = _kept_classes(counts, names_all)
    names = [names_all[i] for i in kept]
    confusion = counts.pixels[np.ix_(kept, kept)]
    per_class = metrics.per_class_figures(confusion, names)
    overall = metrics.overall_figures(confusion)
    mean_over = [n for n in names if n != UNCLASSIFIED_NAME]
    hectares = None
    if georeferenced:
        hectares = (counts.area_m2[np.ix_(kept, kept)] / SQUARE_METRES_PER_HECTARE).tolist()
    report = {
        "engine": {"name": "rs-ovseg", "version": __version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "overall_accuracy": overall["overall_accuracy"],
        "kappa": overall["kappa"],
        "miou": metrics.mean_of_defined(per_class[n]["iou"] for n in mean_over),
        "mf1": metrics.mean_of_defined(per_class[n]["f1"] for n in mean_over),
        "classes": names,
        "confusion_matrix": confusion.tolist(),
        "confusion_matrix_ha": hectares,
        "confusion_matrix_axes": "rows = reference, columns = map, in `classes` order; pixels (and hectares)",
        "per_class": per_class,
        "mean_over": mean_over,
        "assessed_pixels": overall["assessed_pixels"],
        "not_assessed_pixels": {
            "no_reference": counts.no_reference_pixels,
            "ignored_reference_codes": counts.ignored_pixels,
            "unmatched_reference_codes": int(sum(counts.unmatched.values())),
            "map_nodata": counts.map_nodata_pixels,
            "map_value_without_class": counts.map_unnamed_pixels,
        },
        "unmatched_reference_codes": {str(code): n for code, n in sorted(counts.unmatched.items())},
        "unmatched_reference_names": {
            str(code): (ref.names or {})[code]
            for code in sorted(counts.unmatched)
            if code in (ref.names or {})
        },
        "mapping": {
            "how": correspondence.how,
            "classes": {name: correspondence.description.get(name, []) for name in names_all},
            "ignore": ignore,
            "reference_names": {str(c): n for c, n in sorted((ref.names or {}).items())},
        },
        "inputs": inputs,
        "area_estimates": _area_section(counts, kept, names, georeferenced),
        "notes": list(ref.notes),
    }
    if overall["assessed_pixels"] == 0:
        report["notes"].append(
            "no pixel was assessed: check the mapping, --ignore and the reference's extent"
        )
    return report


def _area_section(counts: ConfusionCounts, kept: list[int], names: list[str], georeferenced: bool) -> dict:
    """Olofsson et al. (2014) estimates with the map's classes as strata (see area_estimates)."""
    sample = counts.pixels[np.ix_(kept, kept)].T  # rows = map class (stratum), columns = reference
    if georeferenced:
        mapped = counts.map_area_m2[kept] / SQUARE_METRES_PER_HECTARE
        unit = "ha"
    else:
        mapped = counts.map_pixels[kept].astype(np.float64)
        unit = "pixels"
    sampled = sample.sum(axis=1) > 0
    estimates = area_estimates.stratified_estimates(sample, np.where(sampled, mapped, 0.0), names)
    for k, name in enumerate(names):
        estimates["per_class"][name]["mapped_pixels"] = int(counts.map_pixels[kept][k])
    estimates.update(
        unit=unit,
        strata="the map's classes over the assessed extent; assessed pixels are each stratum's sample",
        unsampled_strata=[name for name, s in zip(names, sampled) if not s],
        mapped_area_total=float(mapped.sum()),
        mapped_pixels_total=int(counts.map_pixels[kept].sum()),
        caveat="pixels are not independent samples (neighbours agree): intervals are optimistic",
    )
    if not math.isfinite(estimates["total_area"]):
        estimates["total_area"] = None
    return estimates
