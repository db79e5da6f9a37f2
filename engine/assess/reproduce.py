"""``reproduce``: a method over a benchmark dataset, scored as the published tables were.

Each image goes through the pipeline's pixel-space path (``engine.pipeline.job.run_segment``: no
georeferencing, working resolution = the reference's resize to ``resize_long_side``), its class raster
is turned into the dataset's class indices (raster value v ≥ 1 → v − 1; unclassified, i.e. below the
probability threshold → ``background_index``, as the reference's ``bg_idx``), and its per-class areas
(engine.assess.miou) are kept in ``<report>.images/<image>.json`` beside the report. A later run with the
same settings reads those instead of segmenting again, so an interrupted run resumes where it stopped;
changed settings start afresh. The report sums the areas over the dataset (mmseg's ``IoUMetric``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import __version__
from engine.errors import UserError
from engine.pipeline.progress import CancelToken, ProgressEvent, ignore_progress
from engine.raster.gdal_setup import gdal_module
from engine.raster.output_paths import ensure_outputs_safe
from engine.raster.sidecar import write_sidecar

from . import miou as mmseg_iou
from .protocols import Protocol, load_protocol

#: Method options passed through to ``segment`` (the same names as its options).
METHOD_OPTIONS = (
    "clip",
    "upsampler",
    "attention",
    "templates",
    "dtype",
    "device",
    "random_weights",
    "seed",
    "batch_size",
    "sam",
    "schedule",
    "sam_window",
    "mask_cache",
    "sam_parameter_sets",
    "sam3",
    "sam3_config",
    "sam3_preset",
    "instance_confidence",
)


@dataclass
class ReproduceRequest:
    dataset: str
    root: str
    method: str = "segearth-ov"
    report: str = ""
    limit: int | None = None
    threshold: float | None = None  # None: the protocol's prob_thd for the method
    resize_long_side: int | None = None  # None: the protocol's (448)
    keep_predictions: bool = False  # also keep each image's class indices as <image>.png
    options: dict = field(default_factory=dict)  # METHOD_OPTIONS given


def read_label(path: Path) -> np.ndarray:
    """Band 1 of a label image as int64 (mmseg reads label maps unchanged)."""
    gdal = gdal_module()
    dataset = gdal.Open(str(path))
    return dataset.GetRasterBand(1).ReadAsArray().astype(np.int64)


def _settings(request: ReproduceRequest, protocol: Protocol) -> dict:
    # The protocol's prob_thd for the method, else the method's own default (its meaning differs by
    # method: ReSeg-CLIP's is a cosine margin), unless --threshold sets one.
    threshold = request.threshold if request.threshold is not None else protocol.threshold(request.method)
    # The reference's resize of the method (SegEarth-OV: long side 448), else the method's own working
    # resolution rule (e.g. SegEarth-OV3: native pixels), unless --resize sets one.
    resize = request.resize_long_side or (protocol.data.get("resize_long_side") or {}).get(request.method)
    if resize is not None and int(resize) <= 0:
        raise UserError(f"--resize must be a positive number of pixels, got {resize}")
    options = {k: request.options[k] for k in sorted(request.options) if request.options[k] is not None}
    if request.method == "segearth-ov3":
        from engine.methods.segearth_ov3.settings import PRESETS as SAM3_PRESETS

        # Its reference config of this dataset; datasets the reference has no config for (DLRSD) keep
        # the method's default preset.
        if protocol.dataset in SAM3_PRESETS:
            options.setdefault("sam3_preset", protocol.dataset)
    return {
        "dataset": protocol.dataset,
        "method": request.method,
        "threshold": None if threshold is None else float(threshold),
        "resize_long_side": None if resize is None else int(resize),
        "reduce_zero_label": bool(protocol.data["reduce_zero_label"]),
        "ignore_index": int(protocol.data["ignore_index"]),
        "background_index": _background(protocol.data["background_index"]),
        "vocabulary": protocol.data["vocabulary"],
        "options": options,
    }


def _background(value) -> int | None:
    return None if value is None else int(value)


def fingerprint(settings: dict, vocabulary_text: str) -> str:
    text = json.dumps(settings, sort_keys=True, default=str) + vocabulary_text
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _weights(record: dict) -> dict:
    """Every ``sha256`` in a run's record, keyed by where it was found (model, upsampler, SAM, ...)."""
    found: dict[str, str] = {}

    def visit(value, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "sha256" and isinstance(item, str):
                    found[where or "weights"] = item
                else:
                    visit(item, f"{where}.{key}" if where else str(key))

    visit(record.get("method", {}), "")
    return found


def _write_json(path: Path, data: dict) -> None:
    temporary = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    write_sidecar(temporary, data)
    os.replace(temporary, path)


def _segment_image(image: Path, settings: dict, vocabulary_path: Path, folder: Path, models, cancel) -> tuple:
    """Class raster values (H, W) of ``image`` and the run's record."""
    from engine.pipeline.job import run_segment

    gdal = gdal_module()
    dataset = gdal.Open(str(image))
    long_side = max(dataset.RasterXSize, dataset.RasterYSize)
    dataset = None
    out = folder / f"{uuid.uuid4().hex[:8]}.tif"
    raw = {
        "input": str(image),
        "out": str(out),
        "vocabulary": str(vocabulary_path),
        "method": settings["method"],
        **settings["options"],
    }
    if settings["resize_long_side"] is not None:
        raw["gsd"] = long_side / settings["resize_long_side"]  # source pixels per working pixel
    if settings["threshold"] is not None:
        raw["threshold"] = settings["threshold"]
    result = run_segment(raw, models=models, cancel=cancel)
    try:
        written = gdal.Open(result.out)  # kept in a name: a band must not outlive its dataset
        values = written.GetRasterBand(1).ReadAsArray()
        written = None
    finally:
        for path in (result.out, result.sidecar, result.out + ".aux.xml"):
            Path(path).unlink(missing_ok=True)
    return values, result.record


def reproduce(request: ReproduceRequest, *, progress=None, cancel=None) -> dict:
    """Run ``request``; returns the report (also written to ``request.report``)."""
    from engine.methods.registry import ModelCache
    from engine.vocabulary import load_vocabulary_file

    progress = progress or ignore_progress
    cancel = cancel or CancelToken()
    protocol = load_protocol(request.dataset)
    root = Path(request.root).expanduser()
    if not request.report:
        raise UserError("no report given: pass --report R.json")
    report_path = Path(request.report).expanduser().resolve()
    if not report_path.parent.is_dir():
        raise UserError(f"--report: the folder {report_path.parent} does not exist")
    ensure_outputs_safe([], {"--report": str(report_path)})
    if root.resolve() in report_path.parents:
        raise UserError(f"--report {report_path} lies inside the dataset --root {root}: write it elsewhere")
    settings = _settings(request, protocol)
    vocabulary = load_vocabulary_file(protocol.vocabulary_path)
    names = vocabulary.names
    classes = len(names)
    if settings["background_index"] is not None and not 0 <= settings["background_index"] < classes:
        raise UserError(
            f"background index {settings['background_index']} is not a class of {protocol.dataset}"
        )
    key = fingerprint(settings, protocol.vocabulary_path.read_text(encoding="utf-8"))
    pairs = protocol.pairs(root)
    total_images = len(pairs)
    if request.limit is not None:
        if request.limit <= 0:
            raise UserError(f"--limit must be a positive number of images, got {request.limit}")
        pairs = pairs[: request.limit]
    per_image_dir = report_path.with_name(report_path.stem + ".images")
    per_image_dir.mkdir(exist_ok=True)
    models = ModelCache()
    totals = {k: np.zeros(classes, np.int64) for k in ("intersect", "union", "pred", "label")}
    weights: dict[str, str] = {}
    resumed = 0
    window: dict = {}
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="rs-ovseg-reproduce-"))
    images_dir = root / protocol.data["images"]
    try:
        for done, (image, label_path) in enumerate(pairs):
            cancel.check()
            relative = image.relative_to(images_dir)
            stem = str(relative.with_suffix("")).replace(os.sep, "__")
            result_path = per_image_dir / f"{stem}.json"
            kept = _read_kept(result_path, key)
            if kept is not None:
                resumed += 1
                areas = {k: np.asarray(kept[k], np.int64) for k in totals}
                weights.update(kept.get("weights", {}))
                window = kept.get("window", {})
            else:
                progress(
                    ProgressEvent(
                        done / len(pairs), "inference", f"image {done + 1}/{len(pairs)}: {relative}"
                    )
                )
                values, record = _segment_image(
                    image, settings, protocol.vocabulary_path, work, models, cancel
                )
                label = read_label(label_path)
                if label.shape != values.shape:
                    raise UserError(
                        f"{label_path} is {label.shape[1]}×{label.shape[0]} pixels, its image "
                        f"{values.shape[1]}×{values.shape[0]}: they must match"
                    )
                if settings["reduce_zero_label"]:
                    label = mmseg_iou.reduce_zero_label(label, settings["ignore_index"])
                # no background class (DLRSD): an unclassified pixel is predicted as no class (-1)
                unclassified = -1 if settings["background_index"] is None else settings["background_index"]
                prediction = np.where(values == 0, unclassified, values.astype(np.int64) - 1)
                areas = mmseg_iou.image_areas(prediction, label, classes, settings["ignore_index"])
                image_weights = _weights(record)
                run_settings = record.get("settings", {})
                window = {
                    k: run_settings.get(k) for k in ("crop_size", "crop_stride", "working_size", "threshold")
                }
                weights.update(image_weights)
                entry = {
                    "image": str(relative),
                    "label": str(label_path.relative_to(root)),
                    "fingerprint": key,
                    **{k: v.tolist() for k, v in areas.items()},
                    "weights": image_weights,
                    "window": window,
                }
                if request.keep_predictions:
                    _write_png(per_image_dir / f"{stem}.png", prediction)
                _write_json(result_path, entry)
            for k in totals:
                totals[k] += areas[k]
            progress(ProgressEvent((done + 1) / len(pairs), "inference", f"image {done + 1}/{len(pairs)}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    scores = mmseg_iou.dataset_miou(totals)
    published = protocol.published(request.method)
    miou_percent = None if scores["miou"] is None else round(100 * scores["miou"], 2)
    report = {
        "engine": {"name": "rs-ovseg", "version": __version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": protocol.dataset,
        "dataset_name": protocol.data["name"],
        "root": str(root.resolve()),
        "method": request.method,
        "settings": settings,
        "protocol": protocol.data,
        "weights_sha256": weights,
        "sliding_window": {k: window.get(k) for k in ("crop_size", "crop_stride")},
        "threshold_applied": window.get("threshold"),
        "images": {
            "in_dataset": total_images,
            "evaluated": len(pairs),
            "resumed": resumed,
            "limit": request.limit,
        },
        "classes": names,
        "per_class": {
            name: {
                "iou": None if np.isnan(scores["iou"][c]) else float(scores["iou"][c]),
                "intersection_pixels": int(totals["intersect"][c]),
                "union_pixels": int(totals["union"][c]),
                "label_pixels": int(totals["label"][c]),
                "predicted_pixels": int(totals["pred"][c]),
            }
            for c, name in enumerate(names)
        },
        "miou": scores["miou"],
        "miou_percent": miou_percent,
        "aacc": scores["aacc"],
        "published_miou_percent": published,
        "difference_points": None
        if published is None or miou_percent is None
        else round(miou_percent - published, 2),
        "per_image_results": str(per_image_dir),
        "timings_s": {"total": time.perf_counter() - started},
        "metric": "mmseg IoUMetric: intersections and unions summed over the dataset; classes without union "
        "left out of the mean",
    }
    if request.limit is not None and request.limit < total_images:
        report["warning"] = (
            f"--limit {request.limit}: {len(pairs)} of {total_images} images, not the published protocol"
        )
    if settings["options"].get("random_weights"):
        report["warning_weights"] = "random weights: the figures are meaningless (tests and benchmarks only)"
    _write_json(report_path, report)
    progress(ProgressEvent(1.0, "done", f"mIoU {miou_percent}"))
    return report


def _read_kept(path: Path, key: str) -> dict | None:
    """A per-image result of a run with the same settings, or None (absent, unreadable, other settings)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if data.get("fingerprint") == key else None


def _write_png(path: Path, classes: np.ndarray) -> None:
    gdal = gdal_module()
    memory = gdal.GetDriverByName("MEM").Create("", classes.shape[1], classes.shape[0], 1, gdal.GDT_Byte)
    memory.GetRasterBand(1).WriteArray(classes.astype(np.uint8))
    temporary = path.with_name(f".{path.stem}.partial-{uuid.uuid4().hex[:8]}.png")
    gdal.GetDriverByName("PNG").CreateCopy(str(temporary), memory)
    Path(str(temporary) + ".aux.xml").unlink(missing_ok=True)
    os.replace(temporary, path)
