"""``train --dataset NAME --root DIR``: a benchmark's train split in the published layout, read image by
image; label values are the protocol vocabulary's classes, unseen classes' pixels are not learned from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from osgeo import gdal

from engine.cli.train import training_request
from engine.errors import UserError
from engine.methods.aeroseg.model_file import read_tensors
from engine.methods.aeroseg.training.datasets import benchmark_data, read_pair
from engine.methods.aeroseg.training.labels import IGNORE
from engine.methods.aeroseg.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")


def write_tile(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = array.shape[0] if array.ndim == 3 else 1
    dataset = gdal.GetDriverByName("GTiff").Create(
        str(path), array.shape[-1], array.shape[-2], bands, gdal.GDT_Byte
    )
    for band in range(bands):
        dataset.GetRasterBand(band + 1).WriteArray(array[band] if array.ndim == 3 else array)
    dataset = None


@pytest.fixture
def openearthmap(tmp_path):
    """Two train tiles and one val tile in OpenEarthMap's layout (img_dir/…, ann_dir/…), no georeferencing."""
    rng = np.random.default_rng(0)
    for split, names in (("train", ("a", "b")), ("val", ("c",))):
        for name in names:
            labels = np.zeros((96, 96), dtype=np.uint8)  # background
            labels[:, 48:] = 8  # building
            labels[:10] = 6  # water
            labels[-5:] = 255  # ignored
            rgb = rng.integers(0, 256, (3, 96, 96), dtype=np.uint8)
            write_tile(tmp_path / "img_dir" / split / f"{name}.tif", rgb)
            write_tile(tmp_path / "ann_dir" / split / f"{name}.tif", labels)
    return tmp_path


def test_labels_are_the_protocol_classes_and_unseen_ones_are_ignored(openearthmap):
    data = benchmark_data("openearthmap", str(openearthmap), ["water"])
    assert [names[0] for names in data.classes] == [
        "background", "bareland", "grass", "pavement", "road", "tree", "cropland", "building",
    ]  # fmt: skip
    assert data.classes[-1] == ["building", "roof", "house"] and data.unseen == ["water"]
    assert [p[0].name for p in data.pairs] == ["a.tif", "b.tif"] and len(data.validation) == 1
    _, labels = read_pair(*data.pairs[0], data.lookup)
    assert (labels[20:-5, :48] == 1).all() and (labels[20:-5, 48:] == 8).all()  # background 1, building 8
    assert (labels[:10] == IGNORE).all() and (labels[-5:] == IGNORE).all()  # water unseen, 255 ignored


def test_a_benchmark_trains_and_records_its_split(openearthmap, tmp_path):
    request = training_request(
        {
            "dataset": "openearthmap",
            "root": str(openearthmap),
            "unseen": ["water"],
            "out": str(tmp_path / "oem.safetensors"),
            "architecture": "tiny",
            "random_weights": True,
            "steps": 2,
            "batch_size": 1,
            "crop": 64,
            "sbp_weight": 0.0,
            "checkpoint_every": 0,
        }
    )
    metadata = train(request)
    assert metadata["unseen"] == ["water"] and len(metadata["classes"]) == 8
    assert metadata["data"][0]["train_images"] == 2 and metadata["labels"]["dataset"] == "openearthmap"
    assert metadata["validation"]["pixels"] > 0  # the val split's first images
    tensors, _ = read_tensors(tmp_path / "oem.safetensors")
    assert all(torch.isfinite(t).all() for t in tensors.values())


def test_bad_benchmark_requests_say_what_to_change(openearthmap, tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'dlrsd'"):
        benchmark_data("dlrsd", str(openearthmap), [])
    with pytest.raises(UserError, match="not a class of OpenEarthMap"):
        benchmark_data("openearthmap", str(openearthmap), ["glacier"])
    with pytest.raises(UserError, match="needs --root"):
        benchmark_data("openearthmap", str(tmp_path / "nowhere"), [])
    with pytest.raises(UserError, match="drop --images"):
        training_request(
            {
                "dataset": "openearthmap",
                "root": str(openearthmap),
                "images": ["a.tif"],
                "out": "m.safetensors",
            }
        )
