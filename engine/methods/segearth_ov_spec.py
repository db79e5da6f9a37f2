"""SegEarth-OV's defaults and reference mode (no torch); the method itself is engine.methods.segearth_ov.

Defaults are the reference's (likyoo/SegEarth-OV ``configs/base_config.py``, ``cfg_openearthmap.py``,
``segearth_segmentor.py``); resources/docs/method-defaults.md lists them with their sources.
"""

from __future__ import annotations

from engine.methods.spec import MethodSpec, ThresholdRule

#: The reference resizes each test image to fit inside 448 × 448 px (mmseg Resize, keep_ratio); on a
#: 1000-px OpenEarthMap tile that is native × 1000/448, the fast path's rule for any raster size.
REFERENCE_FIT_EDGE = 448

SEGEARTH_OV = MethodSpec(
    name="segearth-ov",
    label="SegEarth-OV (fast, CLIP only)",
    factory="engine.methods.registry:create_segearth_ov",
    crop_size=224,
    crop_stride=112,
    gsd_factor=1000.0 / 448.0,
    gsd_rule="native GSD x 1000/448 (the reference sees a 1000-px tile at 448 px)",
    threshold=ThresholdRule(
        "probability",
        0.1,
        "minimum probability of the winning class (softmax at logit scale 50); OpenEarthMap uses 0.1, "
        "LoveDA 0.3, iSAID 0.4",
    ),
    logit_scale=50.0,
    templates="OpenAI's 80 ImageNet templates",
    reference={"fit_edge": REFERENCE_FIT_EDGE},
    reference_notes=(
        "the extent is resized to fit inside 448 x 448 working pixels, as the reference resizes each "
        "image, instead of native x 1000/448 (the same on a 1000-px tile)",
        "still different: pixels under the threshold are 0 (unclassified), where the reference gives "
        "them its background class; the reference runs CLIP in float16",
    ),
)
