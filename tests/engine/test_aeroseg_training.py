"""AerOSeg training: what trains and what stays frozen, labels from polygons and rasters, bad input,
resume equality, the model file, and that the tiny model learns a labelled patch of the Köln tile."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from osgeo import gdal

from engine.errors import UserError
from engine.methods.aeroseg.backbones import load_trained
from engine.methods.aeroseg.model_file import read_tensors
from engine.methods.aeroseg.training.labels import IGNORE, load_labelled_images
from engine.methods.aeroseg.training.loop import TrainingRequest, make_optimizer, train
from engine.methods.aeroseg.training.loss import segmentation_loss
from engine.methods.aeroseg.training.settings import TrainingSettings
from engine.methods.aeroseg.training.validation import predict_classes
from tests.engine.aeroseg_data import BOXES, KOELN, PATCH, patch_vrt, write_polygons
from tests.engine.aeroseg_models import tiny_aeroseg

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not KOELN.is_file(), reason="the Köln tile is not in /work/shared/data"),
]
CLASSES = [["solar panel"], ["field"]]


def quick(**changes) -> TrainingSettings:
    values = dict(
        steps=4,
        batch_size=1,
        learning_rate=1e-3,
        validation_fraction=0.0,
        validate_every=0,
        checkpoint_every=0,
    )
    values.update(changes)
    return TrainingSettings(**values)


def request(tmp_path, **changes) -> TrainingRequest:
    values = dict(
        images=[patch_vrt(tmp_path)],
        labels=write_polygons(tmp_path / "labels.gpkg"),
        label_field="class",
        classes=CLASSES,
        out=str(tmp_path / "model.safetensors"),
        architecture="tiny",
        settings=quick(),
        random_weights=True,
    )
    values.update(changes)
    return TrainingRequest(**values)


def test_one_step_changes_only_query_value_projections_and_the_head():
    model = tiny_aeroseg().train()
    frozen_before = {k: v.clone() for k, v in model.clip.state_dict().items()}
    sam_before = {k: v.clone() for k, v in model.sam_encoder.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    optimizer = make_optimizer(
        model, TrainingSettings(learning_rate=1e-2, clip_lr_multiplier=1.0, weight_decay=0.1)
    )
    images = torch.randint(0, 256, (1, 3, 128, 128)).float()
    labels = torch.randint(1, 3, (1, 128, 128), dtype=torch.uint8)
    output = model(images, model.text_features(["building", "road"]))
    segmentation_loss(output.logits, labels, torch.tensor([1, 2]), "exclude").backward()
    optimizer.step()
    after = model.clip.state_dict()
    changed = {k for k in after if not torch.equal(after[k], frozen_before[k])}
    assert changed, "CLIP's projections did not train"
    assert all(
        k.endswith(("q_proj_weight_split", "q_bias_split", "v_proj_weight_split", "v_bias_split"))
        for k in changed
    )
    assert any("transformer.resblocks" in k and not k.startswith("visual") for k in changed), (
        "text tower untouched"
    )
    assert any(k.startswith("visual.") for k in changed), "image tower untouched"
    for key in after:
        if key.endswith(("k_proj_weight_split", "k_bias_split")):
            assert torch.equal(after[key], frozen_before[key]), key
    # the fused projection open_clip runs with keeps the original key rows
    attention = model.clip.visual.transformer.resblocks[0].attn
    model(images, model.text_features(["building"]))
    width = attention.embed_dim
    assert torch.equal(
        attention.in_proj_weight[width : 2 * width],
        frozen_before["visual.transformer.resblocks.0.attn.k_proj_weight_split"],
    )
    assert all(torch.equal(v, sam_before[k]) for k, v in model.sam_encoder.state_dict().items())
    assert any(not torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())


def test_polygons_are_rasterised_onto_the_image_grid_and_reprojected(tmp_path):
    image = patch_vrt(tmp_path)
    here = write_polygons(tmp_path / "utm.gpkg")
    elsewhere = write_polygons(tmp_path / "wgs84.gpkg", epsg=4326)
    (utm,), _ = load_labelled_images([image], here, CLASSES, label_field="class")
    (wgs,), _ = load_labelled_images([image], elsewhere, CLASSES, label_field="class")
    col, row = PATCH[:2]
    for number, box in enumerate(BOXES.values(), start=1):
        c0, r0, c1, r1 = box
        inside = utm.labels[r0 - row + 1 : r1 - row - 1, c0 - col + 1 : c1 - col - 1]
        assert (inside == number).all()
        assert (utm.labels == number).sum() == pytest.approx((c1 - c0) * (r1 - r0), rel=0.05)
    # the same polygons in WGS 84 land on the same pixels (up to an edge pixel of rounding)
    assert (utm.labels != wgs.labels).mean() < 0.01
    assert set(np.unique(utm.labels)) == {0, 1, 2}


def test_label_raster_values_and_ignore(tmp_path):
    image = patch_vrt(tmp_path)
    labels = np.zeros((PATCH[3], PATCH[2]), dtype=np.uint8)
    labels[10:40, 10:40], labels[80:120, 70:120], labels[0:5] = 1, 2, IGNORE
    raster = gdal.Translate(str(tmp_path / "labels.tif"), image, bandList=[1], format="GTiff")
    raster.GetRasterBand(1).WriteArray(labels)
    raster = None
    (loaded,), _ = load_labelled_images([image], str(tmp_path / "labels.tif"), CLASSES)
    assert np.array_equal(loaded.labels, labels)
    labels[50, 50] = 7
    bad = gdal.Open(str(tmp_path / "labels.tif"), gdal.GA_Update)
    bad.GetRasterBand(1).WriteArray(labels)
    bad = None
    with pytest.raises(UserError, match="values 7"):
        load_labelled_images([image], str(tmp_path / "labels.tif"), CLASSES)


def test_unlabelled_pixels_are_left_out_or_negative():
    logits = torch.tensor([[[[3.0, -1.0]], [[0.5, 2.0]]]])  # (1, 2 queries, 1, 2)
    labels = torch.tensor([[[1, 0]]], dtype=torch.uint8)  # second pixel unlabelled
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    exclude = bce(torch.tensor([3.0, 0.5]), torch.tensor([1.0, 0.0]))
    negative = bce(logits.flatten(), torch.tensor([1.0, 0.0, 0.0, 0.0]))
    query_class = torch.tensor([1, 2])
    assert segmentation_loss(logits, labels, query_class, "exclude") == pytest.approx(float(exclude))
    assert segmentation_loss(logits, labels, query_class, "negative") == pytest.approx(float(negative))


def test_labels_outside_the_imagery_are_refused(tmp_path):
    far = {name: (c0 + 5000, r0, c1 + 5000, r1) for name, (c0, r0, c1, r1) in BOXES.items()}
    with pytest.raises(UserError, match="no labelled pixel: the labels"):
        train(request(tmp_path, labels=write_polygons(tmp_path / "far.gpkg", far)))


def test_a_class_without_pixels_is_named(tmp_path):
    with pytest.raises(UserError, match="no labelled pixel for class\\(es\\) tree"):
        train(request(tmp_path, classes=[*CLASSES, ["tree"]]))


def test_bad_steps_output_and_field_are_refused_before_training(tmp_path):
    with pytest.raises(UserError, match="--steps must be at least 1"):
        TrainingSettings(steps=0)
    with pytest.raises(UserError, match="not writable"):
        train(request(tmp_path, out="/proc/model.safetensors"))
    with pytest.raises(UserError, match=r"must end in \.safetensors"):
        train(request(tmp_path, out=str(tmp_path / "model.pt")))
    with pytest.raises(UserError, match="no field 'kind'"):
        train(request(tmp_path, label_field="kind"))
    assert not list(tmp_path.glob("*.safetensors"))


def test_resume_continues_bit_for_bit(tmp_path):
    """6 steps straight == a run cancelled after its step-3 checkpoint, resumed to 6."""
    from engine.errors import Cancelled
    from engine.pipeline.progress import CancelToken

    settings = quick(steps=6, checkpoint_every=3, batch_size=2)
    straight = tmp_path / "straight"
    straight.mkdir()
    train(request(straight, settings=settings))
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    token = CancelToken()

    def cancel_after_four(event):
        if event.stage == "train" and event.message.startswith("step 4/"):
            token.cancel()

    with pytest.raises(Cancelled):
        train(request(interrupted, settings=settings), progress=cancel_after_four, cancel=token)
    assert not (interrupted / "model.safetensors").exists()
    assert (interrupted / "model.checkpoint.safetensors").is_file()
    train(request(interrupted, settings=settings, resume=True))
    first, meta_first = read_tensors(straight / "model.safetensors")
    second, meta_second = read_tensors(interrupted / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert meta_first["history"] == meta_second["history"]
    assert not (interrupted / "model.checkpoint.safetensors").exists()
    with pytest.raises(UserError, match="no checkpoint"):
        train(request(interrupted, settings=settings, resume=True))


def test_resume_refuses_another_run(tmp_path):
    from engine.errors import Cancelled
    from engine.pipeline.progress import CancelToken

    token = CancelToken()

    def stop(event):
        if event.stage == "train" and event.message.startswith("step 2/"):
            token.cancel()

    with pytest.raises(Cancelled):
        train(request(tmp_path, settings=quick(steps=4, checkpoint_every=1)), progress=stop, cancel=token)
    with pytest.raises(UserError, match="belongs to another run"):
        train(request(tmp_path, settings=quick(steps=4, checkpoint_every=1, learning_rate=5e-4), resume=True))


def test_tiny_model_learns_a_labelled_patch_of_the_koeln_tile(tmp_path):
    """Overfit: ≥ 90 % of the labelled pixels right after a bounded number of steps (on the CPU)."""
    events = []
    metadata = train(
        request(tmp_path, settings=quick(steps=60, validation_fraction=0.0)), progress=events.append
    )
    assert any("ETA" in e.message for e in events if e.stage == "train")
    model, stored = load_trained(str(tmp_path / "model.safetensors"))
    assert stored["class_names"] == ["solar panel", "field"] == metadata["class_names"]
    sidecar = json.loads((tmp_path / "model.aeroseg.json").read_text())
    assert sidecar["base"]["clip"]["random_weights"] is True and sidecar["architecture"]["name"] == "tiny"
    (image,), _ = load_labelled_images(
        [patch_vrt(tmp_path)], str(tmp_path / "labels.gpkg"), CLASSES, label_field="class"
    )
    with torch.no_grad():
        text = model.text_features(stored["queries"])
        predicted = predict_classes(
            model, torch.from_numpy(image.rgb.astype(np.float32))[None], text, torch.tensor([1, 2])
        )
    labelled = (image.labels > 0) & (image.labels != IGNORE)
    accuracy = float((predicted[0].numpy()[labelled] == image.labels[labelled]).mean())
    assert accuracy >= 0.9, f"pixel accuracy {accuracy:.3f} after 60 steps"


def test_held_out_blocks_keep_every_class_in_training():
    from engine.methods.aeroseg.training.labels import LabelledImage
    from engine.methods.aeroseg.training.sampling import validation_masks

    labels = np.zeros((128, 256), dtype=np.uint8)
    labels[:, :128], labels[:64, 128:] = 1, 2  # class 1 in 4 blocks of 64 px, class 2 in 2
    image = LabelledImage("x", np.zeros((3, 128, 256), np.uint8), labels, (0, 1, 0, 0, 0, -1), "")
    (mask,) = validation_masks([image], 0.5, 64, seed=3)
    assert mask.sum() == 3 * 64 * 64  # half of the 6 labelled blocks
    for number in (1, 2):
        assert ((labels == number) & ~mask).any(), f"class {number} lost all its training pixels"
    (again,) = validation_masks([image], 0.5, 64, seed=3)
    assert np.array_equal(mask, again)


def test_validation_figures_are_the_held_out_confusion(tmp_path):
    from engine.assess.metrics import per_class_figures
    from engine.methods.aeroseg.training.validation import validate

    model = tiny_aeroseg().eval()
    (image,), _ = load_labelled_images(
        [patch_vrt(tmp_path)], write_polygons(tmp_path / "l.gpkg"), CLASSES, label_field="class"
    )
    held_out = np.zeros(image.labels.shape, dtype=bool)
    held_out[:, 64:] = True
    queries = ["solar panel", "field"]
    with torch.no_grad():
        text = model.text_features(queries)
        report = validate(
            model, [image], [held_out], ["solar panel", "field"], text, torch.tensor([1, 2]), 128, "cpu"
        )
        predicted = predict_classes(
            model, torch.from_numpy(image.rgb.astype(np.float32))[None], text, torch.tensor([1, 2])
        )[0].numpy()
    confusion = np.zeros((2, 2), dtype=np.int64)
    for row, col in zip(*np.nonzero(held_out & (image.labels > 0))):
        confusion[image.labels[row, col] - 1, predicted[row, col] - 1] += 1
    assert report["pixels"] == confusion.sum() > 0
    expected = per_class_figures(confusion, ["solar panel", "field"])
    assert report["classes"] == expected


def test_imagery_resampled_to_a_coarser_gsd_gets_its_labels_on_that_grid(tmp_path):
    (image,), _ = load_labelled_images(
        [patch_vrt(tmp_path)], write_polygons(tmp_path / "l.gpkg"), CLASSES, label_field="class", gsd=1.0
    )
    assert image.rgb.shape == (3, 64, 64) and image.labels.shape == (64, 64)
    assert image.geotransform[1] == 1.0
    c0, r0, c1, r1 = BOXES["field"]
    assert (image.labels == 2).sum() == pytest.approx((c1 - c0) * (r1 - r0) / 4, rel=0.1)


def test_polygon_classes_match_synonyms_numbers_and_report_the_rest(tmp_path):
    boxes = {"Solar Roof": BOXES["solar panel"], "2": BOXES["field"], "shed": (480, 610, 500, 620)}
    (image,), report = load_labelled_images(
        [patch_vrt(tmp_path)],
        write_polygons(tmp_path / "mixed.gpkg", boxes),
        [["solar panel", "solar roof"], ["field"]],
        label_field="class",
    )
    assert (image.labels == 1).sum() > 2000 and (image.labels == 2).sum() > 1500
    assert report["unmatched_values"] == {"shed": 1}
