"""``reproduce`` end to end on a tiny synthetic dataset in each reference layout, with a
tiny random-weights SegEarth-OV: the figures are meaningless, the bookkeeping is checked against a plain
per-pixel mIoU of the same predictions; resume after an interruption; settings changes start afresh."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from engine.assess.protocols import DATASETS, load_protocol
from engine.assess.reproduce import ReproduceRequest, reproduce
from engine.cli import main
from engine.errors import Cancelled
from engine.pipeline.progress import CancelToken

gdal.UseExceptions()
TINY = {
    "clip": "RSOVSeg-Tiny-ViT-16",
    "upsampler": "none",
    "random_weights": True,
    "templates": "remote-sensing",
}
SIZE = (64, 48)  # width, height
DRIVERS = {".png": "PNG", ".jpg": "JPEG", ".tif": "GTiff"}


def save(path: Path, bands: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    memory = gdal.GetDriverByName("MEM").Create(
        "", bands.shape[2], bands.shape[1], bands.shape[0], gdal.GDT_Byte
    )
    for i, band in enumerate(bands):
        memory.GetRasterBand(i + 1).WriteArray(band)
    gdal.GetDriverByName(DRIVERS[path.suffix.lower()]).CreateCopy(str(path), memory)
    Path(str(path) + ".aux.xml").unlink(missing_ok=True)


def synthetic_dataset(root: Path, dataset: str, images: int = 2, seed: int = 0) -> None:
    """``images`` random images with labels over every class code, the ignore index (and 0 where the
    protocol reduces zero labels), in the protocol's folders and suffixes."""
    protocol = load_protocol(dataset).data
    classes = len(json.loads(Path(load_protocol(dataset).vocabulary_path).read_text())["classes"])
    rng = np.random.default_rng(seed)
    first = 80 if protocol.get("split_stems") else 0  # DLRSD's val split: image numbers 80..99
    for i in range(images):
        name = f"tile_{first + i:02d}"
        save(
            root / protocol["images"] / f"{name}{protocol['image_suffix']}",
            rng.integers(0, 256, (3, SIZE[1], SIZE[0]), dtype=np.uint8),
        )
        low, high = (0, classes + 1) if protocol["reduce_zero_label"] else (0, classes)
        label = rng.integers(low, high, (SIZE[1], SIZE[0])).astype(np.uint8)
        label[rng.random(label.shape) < 0.05] = 255
        save(root / protocol["labels"] / f"{name}{protocol['label_suffix']}", label[None])


def plain_miou(root: Path, dataset: str, predictions: Path, classes: int) -> tuple[list, float]:
    """mIoU by plain loops: labels read again, zero reduced by hand, sums over the dataset."""
    protocol = load_protocol(dataset).data
    inter, union = [0] * classes, [0] * classes
    for prediction_file in sorted(predictions.glob("*.png")):
        name = prediction_file.stem
        label_file = root / protocol["labels"] / f"{name}{protocol['label_suffix']}"
        label = gdal.Open(str(label_file)).ReadAsArray().tolist()
        pred = gdal.Open(str(prediction_file)).ReadAsArray().tolist()
        pred_area, label_area, both = [0] * classes, [0] * classes, [0] * classes
        for lrow, prow in zip(label, pred):
            for value, p in zip(lrow, prow):
                if protocol["reduce_zero_label"]:
                    value = 255 if value in (0, 255) else value - 1
                if value == 255:
                    continue
                if 0 <= p < classes:
                    pred_area[p] += 1
                if 0 <= value < classes:
                    label_area[value] += 1
                    if p == value:
                        both[value] += 1
        for c in range(classes):
            inter[c] += both[c]
            union[c] += pred_area[c] + label_area[c] - both[c]
    ious = [inter[c] / union[c] if union[c] else None for c in range(classes)]
    defined = [v for v in ious if v is not None]
    return ious, sum(defined) / len(defined)


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_layout_end_to_end(tmp_path, dataset, one_thread):
    root = tmp_path / "data"
    synthetic_dataset(root, dataset)
    request = ReproduceRequest(
        dataset,
        str(root),
        report=str(tmp_path / "r.json"),
        resize_long_side=64,
        keep_predictions=True,
        options=TINY,
    )
    report = reproduce(request)
    classes = len(report["classes"])
    ious, miou = plain_miou(root, dataset, tmp_path / "r.images", classes)
    assert report["miou"] == pytest.approx(miou, abs=1e-12)
    for name, iou in zip(report["classes"], ious):
        assert report["per_class"][name]["iou"] == (None if iou is None else pytest.approx(iou, abs=1e-12))
    assert report["images"] == {"in_dataset": 2, "evaluated": 2, "resumed": 0, "limit": None}
    protocol = load_protocol(dataset)
    assert report["settings"]["threshold"] == protocol.threshold("segearth-ov")
    assert report["published_miou_percent"] == protocol.published("segearth-ov")
    assert json.loads((tmp_path / "r.json").read_text())["miou"] == report["miou"]
    assert report["sliding_window"] == {"crop_size": 224, "crop_stride": 112}


def test_unclassified_pixels_fall_to_the_background_class(tmp_path, one_thread):
    """Potsdam's reference sends pixels below the threshold to class 5 (clutter): a plain segment run of
    the same image, its 0s replaced by 5 and the rest shifted down by one, equals the kept prediction."""
    root = tmp_path / "data"
    synthetic_dataset(root, "potsdam", images=1)
    request = ReproduceRequest(
        "potsdam",
        str(root),
        report=str(tmp_path / "r.json"),
        resize_long_side=64,
        threshold=0.5,
        keep_predictions=True,
        options=TINY,
    )
    reproduce(request)
    image = root / "img_dir/val/tile_00.png"
    vocabulary = load_protocol("potsdam").vocabulary_path
    argv = [
        "segment",
        str(image),
        "--vocabulary",
        str(vocabulary),
        "--out",
        str(tmp_path / "s.tif"),
        "--threshold",
        "0.5",
        "--gsd",
        "1",
        "--clip",
        TINY["clip"],
        "--upsampler",
        "none",
        "--random-weights",
        "--templates",
        "remote-sensing",
        "--quiet",
    ]
    assert main(argv) == 0
    values = gdal.Open(str(tmp_path / "s.tif")).ReadAsArray().astype(int)
    assert (values == 0).any()  # the threshold leaves some pixels unclassified
    expected = np.where(values == 0, 5, values - 1)
    kept = gdal.Open(str(tmp_path / "r.images" / "tile_00.png")).ReadAsArray()
    assert np.array_equal(kept, expected)


def test_resume_after_interruption_and_fresh_start_on_new_settings(tmp_path, one_thread):
    root = tmp_path / "data"
    synthetic_dataset(root, "vaihingen", images=3)
    base = {"report": str(tmp_path / "r.json"), "resize_long_side": 64, "options": TINY}
    token = CancelToken()
    seen = []

    def stop_on_second_image(event):
        seen.append(event.message)
        if event.message.startswith("image 2/3:"):
            token.cancel()

    with pytest.raises(Cancelled):
        reproduce(
            ReproduceRequest("vaihingen", str(root), **base), progress=stop_on_second_image, cancel=token
        )
    assert not (tmp_path / "r.json").exists()
    assert sorted(p.name for p in (tmp_path / "r.images").iterdir()) == ["tile_00.json"]
    resumed = reproduce(ReproduceRequest("vaihingen", str(root), **base))
    assert resumed["images"]["resumed"] == 1 and resumed["images"]["evaluated"] == 3
    fresh = reproduce(
        ReproduceRequest("vaihingen", str(root), **{**base, "report": str(tmp_path / "f.json")})
    )
    assert fresh["images"]["resumed"] == 0
    assert fresh["per_class"] == resumed["per_class"] and fresh["miou"] == resumed["miou"]
    other = reproduce(ReproduceRequest("vaihingen", str(root), **base, threshold=0.9, limit=2))
    assert other["images"]["resumed"] == 0 and other["images"]["evaluated"] == 2
    assert other["settings"]["threshold"] == 0.9 and "limit" in other["warning"]


def test_command_line_and_bad_layout(tmp_path, capsys, one_thread):
    root = tmp_path / "data"
    synthetic_dataset(root, "udd5", images=1)
    argv = [
        "reproduce",
        "--dataset",
        "udd5",
        "--root",
        str(root),
        "--report",
        str(tmp_path / "r.json"),
        "--resize",
        "64",
        "--clip",
        TINY["clip"],
        "--upsampler",
        "none",
        "--random-weights",
        "--templates",
        "remote-sensing",
        "--quiet",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "UDD5 segearth-ov: mIoU" in out and "published 50.6 %" in out
    assert main([*argv[:2], "loveda", *argv[3:]]) == 2
    assert "img_dir/val" in capsys.readouterr().err


@pytest.mark.parametrize("dataset", DATASETS)
def test_segearth_ov3_takes_the_reference_config_of_the_dataset_where_one_exists(tmp_path, dataset):
    from engine.assess.reproduce import _settings
    from engine.methods.segearth_ov3.settings import DEFAULT_PRESET, PRESETS

    request = ReproduceRequest(dataset, str(tmp_path), method="segearth-ov3", report=str(tmp_path / "r.json"))
    options = _settings(request, load_protocol(dataset))["options"]
    # DLRSD has no SegEarth-OV3 config: the method's default preset, not an unknown preset name.
    assert options.get("sam3_preset", DEFAULT_PRESET) == (dataset if dataset in PRESETS else DEFAULT_PRESET)
