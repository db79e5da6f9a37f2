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
from engine.errors import UserError
from engine.methods.aeroseg.backbones import load_trained
from engine.methods.aeroseg.method import AerOSegMethod, AerOSegSegmentSettings
from engine.methods.aeroseg.model_file import read_tensors, save_tensors
from engine.pipeline.job import run_segment
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
    settings = sidecar["method"]["settings"]
    assert (settings["window"], settings["window_stride"]) == (128, 86)
    # the global view (default): window-blocks of 128 + 86 px, stepping by 2 × 86 on the global grid
    assert settings["global_view"] and (settings["crop_size"], settings["crop_stride"]) == (214, 172)
    assert sidecar["method"]["model"]["trained_classes"] == ["solar panel", "field"]
    other = run_segment(
        {"input": str(area), "method": "aeroseg", "model": str(trained), "classes": ["road", "tree"],
         "out": str(tmp_path / "other.tif")}
    )  # fmt: skip
    assert set(np.unique(gdal.Open(str(other.out)).ReadAsArray())) <= {1, 2}


def test_edge_crops_are_padded_and_cut_back(trained):
    model, metadata = load_trained(str(trained))
    method = AerOSegMethod(model, metadata, AerOSegSegmentSettings(global_view=False))
    assert (method.crop_size, method.crop_stride) == (128, 86)
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
    # 214-px blocks at stride 172 over 300 px: 2 × 2; the spec's 384-px windows (640-px blocks) give 1
    assert evaluated == 4


def plain_window(model, text, pixels: torch.Tensor) -> torch.Tensor:
    """(3, h, w) float, h, w <= 128 → (T, h, w): padded with black to 128, sigmoid of the bilinearly
    upsampled logits, cut back (written out here, not taken from the method)."""
    height, width = pixels.shape[-2:]
    padded = torch.zeros(1, 3, 128, 128)
    padded[0, :, :height, :width] = pixels
    logits = torch.nn.functional.interpolate(
        model(padded, text).logits, size=(128, 128), mode="bilinear", align_corners=False
    )
    return torch.sigmoid(logits)[0, :, :height, :width]


@pytest.mark.parametrize("shape", [(214, 214), (150, 100)])
def test_the_global_view_matches_a_plain_recomputation(trained, shape):
    """CAT-Seg's inference on one window-block: the mean of its windows at the stride-86 lattice, then
    (windows + the block resized to one window) / 2; a full block and an edge block."""
    model, metadata = load_trained(str(trained))
    method = AerOSegMethod(model, metadata)
    method.set_queries(["solar panel", "field", "water"])
    height, width = shape
    torch.manual_seed(1)
    block = torch.randint(0, 256, (1, 3, height, width), dtype=torch.uint8)
    got = method.crop_logits(block)[0]
    pixels = block[0].float()
    with torch.no_grad():
        text = model.text_features(["solar panel", "field", "water"])
        total = torch.zeros(3, height, width)
        count = torch.zeros(height, width)
        rows = [0, 86] if height > 128 else [0]
        cols = [0, 86] if width > 128 else [0]
        for top in rows:
            for left in cols:
                window = pixels[:, top : top + 128, left : left + 128]
                total[:, top : top + 128, left : left + 128] += plain_window(model, text, window)
                count[top : top + 128, left : left + 128] += 1
        assert float(count.min()) >= 1
        resized = torch.nn.functional.interpolate(
            pixels[None], size=(128, 128), mode="bilinear", align_corners=False
        )
        overview = torch.nn.functional.interpolate(
            plain_window(model, text, resized[0])[None], size=(height, width), mode="bilinear",
            align_corners=False,
        )[0]  # fmt: skip
        expected = (total / count + overview) / 2
    assert got.shape == (3, height, width)
    torch.testing.assert_close(got, expected)
    without = AerOSegMethod(model, metadata, AerOSegSegmentSettings(global_view=False))
    without.set_queries(["solar panel", "field", "water"])
    windows_only = without.crop_logits(block[..., :128, :128])[0]
    assert not torch.allclose(got[:, :128, :128], windows_only), "the global view changes the maps"


def test_the_global_view_keeps_the_output_independent_of_the_tiling(trained, tmp_path):
    """Blocks sit on the global crop grid, so read tiles of 100 px give the one-tile run's maps bit for
    bit. One crop per batch: the model's float sums (like any CPU matmul) vary with the batch size."""
    area = tmp_path / "area.tif"
    gdal.Translate(str(area), str(KOELN), srcWin=[380, 460, 420, 380])
    maps = []
    for name, tile in (("small", 100), ("large", 4000)):
        run_segment(
            {"input": str(area), "method": "aeroseg", "model": str(trained), "tile_size": tile,
             "batch_size": 1, "confidence": str(tmp_path / f"{name}-conf.tif"),
             "out": str(tmp_path / f"{name}.tif")}
        )  # fmt: skip
        record = json.loads((tmp_path / f"{name}.json").read_text())
        assert record["method"]["settings"]["global_view"]
        maps.append((record["windows"]["tiles"], gdal.Open(str(tmp_path / f"{name}-conf.tif")).ReadAsArray()))
    (tiles_small, small), (tiles_large, large) = maps
    assert tiles_small > 4 and tiles_large == 1
    assert np.array_equal(small, large), "the global view made the maps depend on the read tiles"


def test_the_global_view_can_be_turned_off(trained, tmp_path):
    area = tmp_path / "area.tif"
    gdal.Translate(str(area), str(KOELN), srcWin=[400, 480, 200, 200])
    run_segment(
        {"input": str(area), "method": "aeroseg", "model": str(trained), "global_view": "off",
         "out": str(tmp_path / "map.tif")}
    )  # fmt: skip
    settings = json.loads((tmp_path / "map.json").read_text())["method"]["settings"]
    assert not settings["global_view"] and (settings["crop_size"], settings["crop_stride"]) == (128, 86)
    with pytest.raises(UserError, match="--global-view must be on or off"):
        run_segment(
            {"input": str(area), "method": "aeroseg", "model": str(trained), "global_view": "maybe",
             "out": str(tmp_path / "bad.tif")}
        )  # fmt: skip


def test_run_speeds_are_kept_per_architecture_and_view(trained):
    """A tiny model's measured seconds per window must not stand for the full model's (nor blocks with
    the global view for plain windows): the speed store's key says which."""
    from engine.cli.run_speed import speed_key

    args = {"method": "aeroseg", "model": str(trained), "device": "cpu", "dtype": "float32"}
    assert speed_key(args).sam == "tiny/global"
    assert speed_key({**args, "global_view": "off"}).sam == "tiny/windows"
    with pytest.raises(UserError, match="needs --model"):
        speed_key({**args, "model": None})
