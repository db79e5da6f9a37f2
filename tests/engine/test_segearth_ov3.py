"""SegEarth-OV3 against the reference's per-query loop, on a tiny random-weight SAM 3 from sam3's modules.

The reference (earth-insights/SegEarth-OV-3, ``segearthov3_segmentor.py`` with its patched
``Sam3Processor``) runs, per crop: the processor's transform and image backbone once, then for each query
alone ``forward_grounding`` with the dummy geometric prompt, and combines the heads. That loop is written
out plainly below and compared with the engine's batched path (all crops × queries per call, the empty
prompt's features computed once per crop, text encoded once).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.methods.segearth_ov3.sam3_import import import_sam3, sam3_available

if not sam3_available():
    pytest.skip("sam3 is not installed", allow_module_level=True)
import_sam3()

from engine.methods.segearth_ov3.architecture import architecture, build_image_model  # noqa: E402
from engine.methods.segearth_ov3.method import SegEarthOV3  # noqa: E402
from engine.methods.segearth_ov3.settings import SegEarthOV3Settings  # noqa: E402

ARCH = architecture("tiny")


@pytest.fixture(scope="module")
def model():
    return build_image_model(ARCH, seed=3)


@pytest.fixture
def cpu_safe_geometry(monkeypatch):
    """Let sam3's own geometry encoder run on a CPU-only machine for an empty prompt: it pins memory and
    calls torchvision's compiled roi_align even for zero boxes (both unavailable here)."""
    import torchvision

    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: self)

    def roi_align(features, boxes, output_size, *args, **kwargs):
        assert sum(len(b) for b in boxes) == 0, "only the empty prompt is supported here"
        size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        return features.new_zeros((0, features.shape[1], *size))

    monkeypatch.setattr(torchvision.ops, "roi_align", roi_align)


def reference_crop_maps(
    model, crop, queries, confidence, use_instances=True, use_semantic=True, use_presence=True
):
    """The reference's ``_inference_single_view`` for one (3, h, w) uint8 crop → (Q, h, w)."""
    from sam3.model.sam3_image_processor import Sam3Processor

    processor = Sam3Processor(
        model, resolution=ARCH.resolution, device="cpu", confidence_threshold=confidence
    )
    h, w = crop.shape[-2:]
    state = processor.set_image(crop)
    maps = torch.zeros((len(queries), h, w))
    for index, query in enumerate(queries):
        processor.reset_all_prompts(state)
        state["backbone_out"].update(model.backbone.forward_text([query], device="cpu"))
        state["geometric_prompt"] = model._get_dummy_prompt()
        out = model.forward_grounding(
            backbone_out=state["backbone_out"],
            find_input=processor.find_stage,
            geometric_prompt=state["geometric_prompt"],
            find_target=None,
        )
        # The reference fork's Sam3Processor._forward_grounding:
        presence = out["presence_logit_dec"].sigmoid().unsqueeze(1)
        probs = (out["pred_logits"].sigmoid() * presence).squeeze(-1)
        keep = probs > confidence
        object_score = probs[keep]
        masks = F.interpolate(
            out["pred_masks"][keep].unsqueeze(1), (h, w), mode="bilinear", align_corners=False
        ).sigmoid()
        semantic = F.interpolate(out["semantic_seg"], (h, w), mode="bilinear", align_corners=False).sigmoid()
        presence_score = presence.squeeze()
        # segearthov3_segmentor.py, per query:
        if use_instances:
            for instance in range(masks.shape[0]):
                maps[index] = torch.max(maps[index], masks[instance].squeeze() * object_score[instance])
        if use_semantic:
            maps[index] = torch.max(maps[index], semantic.squeeze())
        if use_presence:
            maps[index] = maps[index] * presence_score
    return maps


def random_crops(n, h, w, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=generator)


def object_scores(model, crop, query):
    """Object scores of one query on one crop (to put the confidence threshold among them)."""
    method = SegEarthOV3(model, ARCH, SegEarthOV3Settings(crop_size=64, crop_stride=64))
    method.set_queries([query])
    with torch.inference_mode():
        from engine.methods.segearth_ov3.method import prepare_images

        state = method.grounding.encode_images(prepare_images(crop[None], ARCH.resolution, method.device))
        out = method.grounding.ground(state, method.text, torch.tensor([0]), torch.tensor([0]))
    return (out.object_logits.sigmoid() * out.presence_logits.sigmoid()[:, None]).flatten()


def threshold_between(scores: torch.Tensor) -> float:
    """A confidence threshold in the widest gap among the middle half of ``scores``: some objects kept,
    some dropped, none so close to it that float rounding could move it across."""
    ordered = scores.sort().values
    n = len(ordered)
    middle = ordered[n // 4 : 3 * n // 4 + 1]
    gaps = middle[1:] - middle[:-1]
    k = int(gaps.argmax())
    assert gaps[k] > 1e-4
    return float(middle[k] + middle[k + 1]) / 2


QUERIES = ["building", "roof", "low vegetation"]


@pytest.mark.parametrize(
    "switches",
    [
        dict(),
        dict(use_semantic=False),
        dict(use_presence=False, use_instances=True),
    ],
    ids=["all-parts", "instances-presence", "instances-semantic"],
)
def test_batched_path_matches_reference_loop(model, cpu_safe_geometry, switches):
    crops = random_crops(2, 56, 44)
    scores = object_scores(model, crops[0], QUERIES[0])
    confidence = threshold_between(scores)
    settings = SegEarthOV3Settings(
        crop_size=56, crop_stride=56, confidence_threshold=confidence, pairs_per_call=4, **switches
    )
    method = SegEarthOV3(model, ARCH, settings)
    method.set_queries(QUERIES)
    engine = method.crop_logits(crops)
    with torch.inference_mode():
        reference = torch.stack(
            [reference_crop_maps(model, c, QUERIES, confidence, **switches) for c in crops]
        )
    assert engine.shape == (2, len(QUERIES), 56, 44)
    assert (reference > 0).any()
    torch.testing.assert_close(engine, reference, atol=2e-5, rtol=1e-4)


def test_instances_alone_and_kept_objects_matter(model, cpu_safe_geometry):
    """Without the semantic head the map is the instance part; a threshold above every score leaves
    nothing but zeros, which the reference loop agrees with."""
    crops = random_crops(1, 48, 48, seed=1)
    scores = object_scores(model, crops[0], "tree")
    for confidence in (float(scores.min()) - 1e-3, float(scores.max()) + 1e-3):
        settings = SegEarthOV3Settings(
            crop_size=48, crop_stride=48, confidence_threshold=confidence, use_semantic=False
        )
        method = SegEarthOV3(model, ARCH, settings)
        method.set_queries(["tree"])
        engine = method.crop_logits(crops)
        with torch.inference_mode():
            reference = reference_crop_maps(model, crops[0], ["tree"], confidence, use_semantic=False)
        torch.testing.assert_close(engine[0], reference, atol=2e-5, rtol=1e-4)
    assert engine.abs().max() == 0  # the last threshold dropped every object


def test_empty_prompt_features_match_geometry_encoder(model, cpu_safe_geometry):
    from engine.methods.segearth_ov3.grounding import empty_prompt_features

    with torch.inference_mode():
        backbone = model.backbone.forward_image(torch.randn(2, 3, ARCH.resolution, ARCH.resolution))
        _, feats, pos, sizes = model._get_img_feats(backbone, torch.arange(2))
        expected, expected_mask = model.geometry_encoder(
            geo_prompt=model._get_dummy_prompt(2), img_feats=feats, img_sizes=sizes, img_pos_embeds=pos
        )
        got, mask = empty_prompt_features(model.geometry_encoder, feats[-1], pos[-1])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert torch.equal(mask, expected_mask)


def test_bfloat16_autocast_tracks_float32(model):
    crops = random_crops(2, 40, 40, seed=2)
    settings = SegEarthOV3Settings(crop_size=40, crop_stride=40, confidence_threshold=0.0)
    maps = {}
    for dtype in (torch.float32, torch.bfloat16):
        method = SegEarthOV3(model, ARCH, settings, dtype=dtype)
        method.set_queries(["road", "car"])
        maps[dtype] = method.crop_logits(crops)
    assert maps[torch.bfloat16].dtype == torch.float32
    assert (maps[torch.bfloat16] - maps[torch.float32]).abs().max() < 0.05
    assert float(maps[torch.float32].min()) >= 0.0 and float(maps[torch.float32].max()) <= 1.0


def test_per_query_loop_mode_gives_the_batched_maps(model):
    crops = random_crops(2, 40, 36, seed=5)
    maps = {}
    for loop in (False, True):
        settings = SegEarthOV3Settings(crop_size=40, crop_stride=40, per_query_loop=loop)
        method = SegEarthOV3(model, ARCH, settings)
        method.set_queries(["road", "roof", "grass"])
        maps[loop] = method.crop_logits(crops)
    torch.testing.assert_close(maps[True], maps[False], atol=2e-5, rtol=1e-4)
