"""Per-method defaults and the options object: every method with every benchmark preset produces a map,
thresholds mean what the method's spec says, the reference mode's structure, and the CLI ↔ worker round
trip of SegmentOptions. Tiny random CLIP and SAM (one SAM parameter set, see test_reseg_pipeline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from osgeo import gdal
from raster_files import UTM_1M, random_bands, write_raster

from engine.cli import build_parser
from engine.errors import UserError
from engine.methods.catalogue import SPECS
from engine.methods.registry import MethodOptions, ModelCache, create_method
from engine.options import SegmentOptions
from engine.pipeline.job import run_segment
from engine.pipeline.scoring import score
from engine.pipeline.tiling import crop_spans, padded_length
from engine.sam.window_masks import SamWindowMasks

gdal.UseExceptions()
PRESETS = Path(__file__).resolve().parents[2] / "resources" / "presets"
BENCHMARKS = sorted(
    p for p in PRESETS.glob("*.json") if not p.stem.startswith("task_") and p.stem != "reseg_clip_reference"
)
ONE_SET = [
    {
        "points_per_side": 2,
        "pred_iou_thresh": 0,
        "stability_score_thresh": 0,
        "min_mask_region_area": 0,
        "crop_n_layers": 0,
    }
]
TINY = {"clip": "RSOVSeg-Tiny-ViT-16", "random_weights": True, "upsampler": "none"}
RESEG_FAST = {"sam_parameter_sets": ONE_SET, "schedule": "sam1,self"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Tiny models only (see conftest)."""


@pytest.fixture(scope="module")
def models():
    return ModelCache()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 120 × 100 px raster at 1 m with flat blocks over noise (something for SAM to segment)."""
    bands = random_bands(120, 100, seed=3)
    for i in range(3):
        bands[i, 10:60, 20:90] = 40 + 70 * i
        bands[i, 65:95, 5:50] = 200 - 60 * i
    return write_raster(tmp_path_factory.mktemp("scene") / "scene.tif", bands, gt=UTM_1M, epsg=32632)


def run(models, tmp_path, **args):
    out = tmp_path / f"out_{len(list(tmp_path.glob('out_*.tif')))}.tif"
    extra = {"reseg-clip": RESEG_FAST, "segearth-ov3": {"sam3_config": "tiny"}}.get(args.get("method"), {})
    result = run_segment({**TINY, **extra, **args, "out": str(out)}, models=models)
    labels = gdal.Open(result.out).ReadAsArray()
    return labels, json.loads(Path(result.sidecar).read_text())


# The zero-shot methods (AerOSeg needs a trained model: its own tests).
@pytest.mark.parametrize("method", ["segearth-ov", "reseg-clip", "segearth-ov3"])
def test_every_method_labels_most_pixels_with_every_benchmark_preset(method, models, scene, tmp_path):
    # ReSeg-CLIP under SegEarth-OV's thresholds labelled nothing: its probabilities over raw cosines
    # sit near 1/Q, under a preset's 0.1 whenever Q ≥ 10.
    presets = BENCHMARKS + ([PRESETS / "reseg_clip_reference.json"] if method == "reseg-clip" else [])
    for preset in presets:
        labels, sidecar = run(models, tmp_path, input=scene, method=method, vocabulary=str(preset))
        labelled = float((labels > 0).mean())
        assert labelled > 0.5, f"{method} with {preset.name}: {labelled:.0%} of the pixels labelled"
        expected = json.loads(preset.read_text()).get("method_thresholds", {})
        assert sidecar["settings"]["threshold"] == expected.get(method, SPECS[method].threshold.default)
        assert sidecar["settings"]["threshold_kind"] == SPECS[method].threshold.kind


def test_whole_sentence_prompts_run_with_every_zero_shot_method(models, scene, tmp_path):
    # SegEarth-OV3 once refused a vocabulary with literal prompts (a TypeError from set_queries). Its
    # random tiny model scores sentences arbitrarily, so only the run and its classes are checked.
    preset = PRESETS / "reseg_clip_reference.json"
    names = [c["name"] for c in json.loads(preset.read_text())["classes"]]
    for method in ("segearth-ov", "reseg-clip", "segearth-ov3"):
        labels, sidecar = run(models, tmp_path, input=scene, method=method, vocabulary=str(preset))
        assert labels.shape == (100, 120)
        assert [sidecar["output"]["values"][str(i + 1)] for i in range(len(names))] == names


def test_default_working_resolution_follows_the_method(scene):
    for name, spec in SPECS.items():
        options = SegmentOptions.from_mapping({"input": scene, "method": name})
        from engine.pipeline.segment import prepare

        prepared = prepare(options.segment_request(), spec.crop_size, spec.crop_stride, check_outputs=False)
        prepared.source.close()
        assert prepared.working.gsd == pytest.approx(1.0 * spec.gsd_factor)  # the scene has 1 m pixels
    assert SPECS["reseg-clip"].gsd_factor == 1.0  # the reference tiles at native resolution


def test_threshold_precedence_request_vocabulary_method():
    from engine.vocabulary import from_json_data

    vocabulary = from_json_data({"classes": ["a", "b"], "method_thresholds": {"segearth-ov": 0.3}})
    seg = SegmentOptions.from_mapping({"input": "x.tif"})
    reseg = SegmentOptions.from_mapping({"input": "x.tif", "method": "reseg-clip"})
    assert seg.threshold_for(vocabulary) == 0.3
    assert reseg.threshold_for(vocabulary) == 0.0  # another method's value does not apply
    assert (
        SegmentOptions.from_mapping({"input": "x.tif", "threshold": 0.05}).threshold_for(vocabulary) == 0.05
    )
    legacy = from_json_data({"classes": ["a"], "threshold": 0.4})  # the presets' older form
    assert legacy.method_thresholds == {"segearth-ov": 0.4}


def test_margin_threshold_against_a_plain_loop():
    generator = torch.Generator().manual_seed(0)
    logits = torch.rand(5, 6, 7, generator=generator) * 0.2  # cosine-like values
    query_to_class = [0, 0, 1, 2, 2]
    thresholds = [0.02, 0.05, 0.0]
    labels, margin = score(logits, query_to_class, thresholds, 1.0, kind="margin")
    for y in range(6):
        for x in range(7):
            per_class = [
                max(float(logits[q, y, x]) for q in range(5) if query_to_class[q] == c) for c in range(3)
            ]
            order = sorted(range(3), key=lambda c: -per_class[c])
            lead = per_class[order[0]] - per_class[order[1]]
            assert float(margin[y, x]) == pytest.approx(lead, abs=1e-6)
            expected = 0 if lead < thresholds[order[0]] else order[0] + 1
            assert int(labels[y, x]) == expected
    # Without a threshold both kinds give the same labels (softmax keeps the order).
    by_margin, _ = score(logits, query_to_class, [0.0] * 3, 1.0, kind="margin")
    by_probability, _ = score(logits, query_to_class, [0.0] * 3, 1.0)
    assert torch.equal(by_margin, by_probability)


def test_padded_crops_are_the_reference_tiles():
    for length in (1, 100, 224, 225, 447, 448, 1000):
        # ReSeg-CLIP's reference: for i in range(0, L - 224 + 224, 224), crop [i, min(i + 224, L)), padded.
        reference = [(i, i + 224) for i in range(0, length - 224 + 224, 224)]
        assert crop_spans(padded_length(length, 224, 224), 224, 224) == reference


def test_reference_mode_runs_sam_on_each_reference_tile(models, tmp_path, monkeypatch):
    height, width = 250, 300
    bands = random_bands(width, height, seed=5)
    bands[bands == 0] = 1  # black only where the raster ends
    scene = write_raster(tmp_path / "wide.tif", bands, gt=UTM_1M, epsg=32632)
    seen: list[np.ndarray] = []
    original = SamWindowMasks.sam_window_id_maps

    def recording(self, window):
        seen.append(window.copy())
        return original(self, window)

    monkeypatch.setattr(SamWindowMasks, "sam_window_id_maps", recording)
    mask_seed = {"seed": 7, "classes": ["road", "tree", "water"]}  # seed 7: no cached SAM windows
    _, fast = run(models, tmp_path, input=scene, method="reseg-clip", **mask_seed)
    assert [w.shape[:2] for w in seen] == [(height, width)]  # fast: one window under 896 px
    seen.clear()
    _, reference = run(models, tmp_path, input=scene, method="reseg-clip", fidelity="reference", **mask_seed)
    tiles = [(y, x) for y in range(0, height, 224) for x in range(0, width, 224)]
    assert len(seen) == len(tiles) == 4
    for window, (y, x) in zip(seen, tiles):
        assert window.shape[:2] == (224, 224)
        rows = np.flatnonzero(window.any(axis=(1, 2)))
        cols = np.flatnonzero(window.any(axis=(0, 2)))
        # The imagery fills the tile's part inside the raster; the rest is black padding.
        assert (rows.max() + 1, cols.max() + 1) == (min(224, height - y), min(224, width - x))
    assert reference["options"]["fidelity"] == "reference" and fast["options"]["fidelity"] == "fast"
    assert reference["settings"]["crop_edge"] == "pad" and fast["settings"]["crop_edge"] == "shift"
    assert reference["method"]["settings"]["sam_window_px"] == 224


def test_reference_mode_fits_segearth_ov_inside_448_pixels(scene):
    options = SegmentOptions.from_mapping({"input": scene, "fidelity": "reference"})
    from engine.pipeline.segment import prepare

    prepared = prepare(options.segment_request(), 224, 112, check_outputs=False)
    prepared.source.close()
    assert max(prepared.working.width, prepared.working.height) == 448  # 120 × 100 px upsampled to fit


def test_literal_prompts_bypass_the_templates(models):
    from engine.clip.text import encode_queries

    method = create_method("segearth-ov", MethodOptions(**TINY), models)
    sentence = "Aerial photo of an asphalt road in the city"
    method.set_queries(["road", sentence], literal=[False, True])
    as_written = encode_queries(method.model, method.tokenizer, [sentence], ["{}"])
    templated = encode_queries(method.model, method.tokenizer, ["road"], method.templates)
    assert torch.allclose(method.query_features[1], as_written[0])
    assert torch.allclose(method.query_features[0], templated[0])
    assert not torch.allclose(
        as_written[0], encode_queries(method.model, method.tokenizer, [sentence], method.templates)[0]
    )


def test_options_round_trip_between_the_command_line_and_the_worker(tmp_path):
    argv = [
        "segment", "in.tif", "--class", "road", "--class", "tree,forest", "--out", "o.tif",
        "--method", "reseg-clip", "--gsd", "0.5", "--threshold", "0.02", "--fidelity", "reference",
        "--sam-window", "448", "--sam-parameter-sets", json.dumps(ONE_SET), "--schedule", "sam1,self",
        "--bbox", "1,2,3,4", "--seed", "3", "--warp", "--tile-size", "512",
    ]  # fmt: skip
    from_cli = SegmentOptions.from_mapping(vars(build_parser("segment").parse_args(argv)))
    worker_args = json.loads(json.dumps(from_cli.to_args()))  # what travels over the JSON pipe
    from_worker = SegmentOptions.from_mapping(worker_args)
    assert from_worker == from_cli
    assert from_worker.to_args() == worker_args
    assert worker_args["sam_window"] == 448 and worker_args["fidelity"] == "reference"
    assert from_worker.method_extra()["sam_parameter_sets"] == ONE_SET
    # The plugin's request (rs_ovseg_qgis.core.segment_request) keeps its names.
    plugin = {"input": "in.tif", "vocabulary": {"classes": [{"name": "road"}]}, "method": "segearth-ov",
              "device": "auto", "out": "o.tif", "overwrite": True, "bbox": [1, 2, 3, 4],
              "bbox_crs": "EPSG:4326", "gsd": 2.0, "bands": [1, 2, 3]}  # fmt: skip
    defaults = ("method", "device")  # the defaults are left out of to_args
    assert SegmentOptions.from_mapping(plugin).to_args() == {
        k: v for k, v in plugin.items() if k not in defaults
    }


def test_options_refuse_what_the_method_lacks():
    with pytest.raises(UserError, match="only apply to --method reseg-clip"):
        SegmentOptions.from_mapping({"input": "x.tif", "sam_window": 448})
    with pytest.raises(UserError, match="--fidelity"):
        SegmentOptions.from_mapping({"input": "x.tif", "fidelity": "exact"})
    with pytest.raises(UserError, match="unknown option"):
        SegmentOptions.from_mapping({"input": "x.tif", "treshold": 0.2})


def test_method_specs_agree_with_the_methods_settings():
    from engine.methods.reseg_clip import RESEG_TEMPLATE, ResegClipSettings
    from engine.methods.segearth_ov import SegEarthOVSettings
    from engine.sam.window_masks import DEFAULT_SAM_WINDOW_PX

    reseg, segearth = ResegClipSettings(), SegEarthOVSettings()
    assert (SPECS["reseg-clip"].crop_size, SPECS["reseg-clip"].crop_stride) == (
        reseg.crop_size,
        reseg.crop_stride,
    )
    assert SPECS["reseg-clip"].logit_scale == reseg.logit_scale and reseg.templates == [RESEG_TEMPLATE]
    assert DEFAULT_SAM_WINDOW_PX == 896
    spec = SPECS["segearth-ov"]
    assert (spec.crop_size, spec.crop_stride, spec.logit_scale) == (
        segearth.crop_size,
        segearth.crop_stride,
        segearth.logit_scale,
    )
