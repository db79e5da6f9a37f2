"""Segmenting with a trained AerOSeg: the train command, then segment --method aeroseg through the
pipeline's global crop grid (classes from the model by default, any names allowed), and models that
do not fit refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from osgeo import gdal

from engine.cli import main
from engine.cli.segment import run_segment
from engine.errors import UserError
from engine.methods.aeroseg.backbones import load_trained
from engine.methods.aeroseg.method import AerOSegMethod
from engine.methods.aeroseg.model_file import read_tensors, save_tensors
from tests.engine.aeroseg_data import KOELN, patch_vrt, write_polygons

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not KOELN.is_file(), reason="the Köln tile is not in /work/shared/data"),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for a few steps by the command line (polygons on a Köln patch)."""
    folder = tmp_path_factory.mktemp("aeroseg")
    labels = write_polygons(folder / "labels.gpkg")
    out = folder / "model.safetensors"
    status = main(
        [
            "train",
            "--images", patch_vrt(folder),
            "--labels", labels,
            "--label-field", "class",
            "--classes", "solar panel,solar roof", "field",
            "--unseen", "water",
            "--out", str(out),
            "--architecture", "tiny",
            "--random-weights",
            "--steps", "3",
            "--batch-size", "1",
            "--quiet",
        ]
    )  # fmt: skip
    assert status == 0
    return out


def test_train_command_writes_the_model_and_its_description(trained):
    tensors, metadata = read_tensors(trained)
    described = json.loads(trained.with_suffix(".aeroseg.json").read_text())
    assert described["classes"] == metadata["classes"] == [["solar panel", "solar roof"], ["field"]]
    assert described["unseen"] == ["water"] and described["steps"] == 3
    assert described["data"][0]["labels_sha256"] and described["base"]["sam"]["state_sha256"]
    assert any(k.startswith("clip.") for k in tensors) and any(k.startswith("head.") for k in tensors)
    assert not any("k_proj_weight_split" in k for k in tensors), (
        "the frozen keys are not part of the trained file"
    )


def test_segment_uses_the_trained_classes_on_the_global_grid(trained, tmp_path):
    area = tmp_path / "area.tif"
    gdal.Translate(str(area), str(KOELN), srcWin=[400, 480, 300, 300])
    result = run_segment(
        {"input": str(area), "method": "aeroseg", "model": str(trained), "out": str(tmp_path / "map.tif")}
    )
    labels = gdal.Open(str(result.out)).ReadAsArray()
    assert labels.shape == (300, 300) and set(np.unique(labels)) <= {1, 2, 3}
    sidecar = json.loads((tmp_path / "map.json").read_text())
    assert [c["name"] for c in sidecar["vocabulary"]] == ["solar panel", "field", "water"]
    assert (
        sidecar["method"]["settings"]["crop_size"] == 128
        and sidecar["method"]["settings"]["crop_stride"] == 86
    )
    assert sidecar["method"]["model"]["trained_classes"] == ["solar panel", "field"]
    other = run_segment(
        {"input": str(area), "method": "aeroseg", "model": str(trained), "classes": ["road", "tree"],
         "out": str(tmp_path / "other.tif")}
    )  # fmt: skip
    assert set(np.unique(gdal.Open(str(other.out)).ReadAsArray())) <= {1, 2}


def test_edge_crops_are_padded_and_cut_back(trained):
    model, metadata = load_trained(str(trained))
    method = AerOSegMethod(model, metadata)
    method.set_queries(["solar panel", "field"])
    torch.manual_seed(0)
    crop = torch.randint(0, 256, (1, 3, 128, 128), dtype=torch.uint8)
    crop[..., 100:, :] = 0
    crop[..., :, 90:] = 0
    full = method.crop_logits(crop)
    edge = method.crop_logits(crop[..., :100, :90])
    assert edge.shape == (1, 2, 100, 90) and full.shape == (1, 2, 128, 128)
    torch.testing.assert_close(edge, full[..., :100, :90])
    assert float(full.min()) >= 0.0 and float(full.max()) <= 1.0


def test_a_model_that_does_not_fit_its_architecture_is_refused(trained, tmp_path):
    tensors, metadata = read_tensors(trained)
    metadata["architecture"]["hidden"] = 64
    save_tensors(tmp_path / "bent.safetensors", tensors, metadata)
    with pytest.raises(UserError, match="does not fit"):
        load_trained(str(tmp_path / "bent.safetensors"))
    (tmp_path / "not-a-model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="not a safetensors file"):
        load_trained(str(tmp_path / "not-a-model.safetensors"))


def test_segment_without_a_model_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match="needs --model"):
        run_segment({"input": str(KOELN), "method": "aeroseg", "out": str(tmp_path / "map.tif")})


def test_segment_defaults_to_the_gsd_the_model_learnt_at(trained, tmp_path):
    """The fixture's model learnt at the patch's native 0.5 m; one trained at --gsd 1 segments at 1 m."""
    _, metadata = read_tensors(trained)
    assert metadata["training_gsd"] == pytest.approx(0.5)
    coarse = tmp_path / "coarse.safetensors"
    status = main(
        [
            "train",
            "--images", patch_vrt(tmp_path),
            "--labels", write_polygons(tmp_path / "labels.gpkg"),
            "--label-field", "class",
            "--classes", "solar panel", "field",
            "--gsd", "1.0",
            "--out", str(coarse),
            "--architecture", "tiny",
            "--random-weights",
            "--steps", "1",
            "--batch-size", "1",
            "--quiet",
        ]
    )  # fmt: skip
    assert status == 0
    area = tmp_path / "area.tif"
    gdal.Translate(str(area), str(KOELN), srcWin=[400, 480, 300, 300])
    run_segment(
        {"input": str(area), "method": "aeroseg", "model": str(coarse), "out": str(tmp_path / "m.tif")}
    )
    assert json.loads((tmp_path / "m.json").read_text())["settings"]["working_gsd_m"] == pytest.approx(1.0)
    run_segment(
        {
            "input": str(area),
            "method": "aeroseg",
            "model": str(coarse),
            "gsd": 0.5,
            "out": str(tmp_path / "n.tif"),
        }
    )
    assert json.loads((tmp_path / "n.json").read_text())["settings"]["working_gsd_m"] == pytest.approx(0.5)


def test_the_estimate_counts_the_windows_of_the_models_own_crop(trained, tmp_path):
    """The tiny model's windows are 128 px (stride 86), not the paper's 384: the worker's estimate, made
    before the model loads, counts the windows the run then evaluates."""
    import io

    import engine.cli.worker as worker_module

    area = tmp_path / "area.tif"
    gdal.Translate(str(area), str(KOELN), srcWin=[400, 480, 300, 300])
    args = {"input": str(area), "method": "aeroseg", "model": str(trained), "out": str(tmp_path / "map.tif")}
    served = worker_module.Worker(worker_module.Channel(io.StringIO()))
    estimated = served.estimate(dict(args))["crop_evaluations"]
    run_segment(dict(args))
    evaluated = json.loads((tmp_path / "map.json").read_text())["windows"]["crops_evaluated"]
    assert estimated == evaluated
    # 300 px at stride 86 from the global grid: far more windows than 384-px windows would give
    assert evaluated > 4
