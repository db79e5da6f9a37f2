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
    with pytest.raises(UserError, match="unknown dataset 'deepglobe'"):
        benchmark_data("deepglobe", str(openearthmap), [])
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


def write_label_png(path, values):
    """A palette PNG as DLRSD distributes its labels: one band of class values 1..17, a colour table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    memory = gdal.GetDriverByName("MEM").Create("", values.shape[1], values.shape[0], 1, gdal.GDT_Byte)
    table = gdal.ColorTable()
    for value in range(256):
        table.SetColorEntry(value, (value, 255 - value, (7 * value) % 256, 255))
    memory.GetRasterBand(1).SetRasterColorTable(table)
    memory.GetRasterBand(1).WriteArray(values)
    gdal.GetDriverByName("PNG").CreateCopy(str(path), memory)


@pytest.fixture
def dlrsd(tmp_path):
    """DLRSD's layout: UCMerced_LandUse/Images/SCENE/SCENENN.tif, DLRSD/Images/SCENE/SCENENN.png;
    numbers 00..79 train, 80..99 val. Labels: buildings (3) left, ship (14) right, sea (13) on top, 0 at
    the bottom."""
    rng = np.random.default_rng(1)
    for scene in ("harbor", "buildings"):
        for number in (0, 1, 85):
            name = f"{scene}{number:02d}"
            labels = np.full((64, 64), 3, dtype=np.uint8)
            labels[:, 32:] = 14
            labels[:8] = 13
            labels[-4:] = 0
            write_tile(tmp_path / "UCMerced_LandUse" / "Images" / scene / f"{name}.tif",
                       rng.integers(0, 256, (3, 64, 64), dtype=np.uint8))  # fmt: skip
            write_label_png(tmp_path / "DLRSD" / "Images" / scene / f"{name}.png", labels)
    return tmp_path


def test_dlrsd_splits_by_image_number_and_maps_its_17_classes(dlrsd, tmp_path):
    data = benchmark_data("dlrsd", str(dlrsd), ["sea"])
    names = [synonyms[0] for synonyms in data.classes]
    assert len(names) == 16 and names[2] == "buildings" and names[12] == "ship" and "sea" not in names
    assert [p[0].name for p in data.pairs] == [
        "buildings00.tif", "buildings01.tif", "harbor00.tif", "harbor01.tif",
    ]  # fmt: skip
    assert [p[1].relative_to(dlrsd).as_posix() for p in data.pairs][:1] == [
        "DLRSD/Images/buildings/buildings00.png"
    ]
    held_out = [
        str(dlrsd / "UCMerced_LandUse" / "Images" / s / f"{s}85.tif") for s in ("buildings", "harbor")
    ]
    assert [image.path for image in data.validation] == held_out  # the val split: numbers 80..99
    _, labels = read_pair(*data.pairs[0], data.lookup)
    assert (labels[8:-4, :32] == 3).all()  # buildings: value 3 is the 3rd class (ours count from 1)
    assert (labels[8:-4, 32:] == 13).all()  # ship: value 14, class 13 once sea (13) is left out
    assert (labels[:8] == IGNORE).all() and (labels[-4:] == IGNORE).all()  # sea unseen; 0 unlabelled
    metadata = train(
        training_request(
            {"dataset": "dlrsd", "root": str(dlrsd), "unseen": ["sea"],
             "out": str(tmp_path / "d.safetensors"), "architecture": "tiny", "random_weights": True,
             "steps": 1, "batch_size": 1, "crop": 64, "sbp_weight": 0.0, "checkpoint_every": 0}
        )
    )  # fmt: skip
    assert metadata["data"][0]["train_images"] == 4 and metadata["unseen"] == ["sea"]
    assert metadata["validation"]["pixels"] > 0


def test_a_colour_label_is_refused(dlrsd):
    colour = dlrsd / "DLRSD" / "Images" / "harbor" / "harbor00.png"
    colour.unlink()
    write_tile(colour.with_suffix(".tif"), np.zeros((3, 64, 64), dtype=np.uint8))
    gdal.Translate(str(colour), str(colour.with_suffix(".tif")), format="PNG")
    data = benchmark_data("dlrsd", str(dlrsd), [])
    pair = next(p for p in data.pairs if p[1] == colour)
    with pytest.raises(UserError, match="3 bands: a label must be one band of class values"):
        read_pair(*pair, data.lookup)
