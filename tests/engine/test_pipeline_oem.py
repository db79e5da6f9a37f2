"""The real OpenEarthMap tile through the tiny random SegEarth-OV: no seams with the real method."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from engine.methods.registry import MethodOptions, create_method
from engine.pipeline.segment import PipelineSettings, SegmentRequest, prepare, segment
from engine.vocabulary import build_vocabulary

OEM = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "oem_koeln_50.tif"
pytestmark = pytest.mark.skipif(not OEM.exists(), reason="shared OpenEarthMap tile not present")


def test_real_method_labels_do_not_depend_on_tile_size(tmp_path):
    options = MethodOptions(
        clip="RSOVSeg-Tiny-ViT-16", upsampler="none", templates="remote-sensing", random_weights=True
    )
    method = create_method("segearth-ov", options)
    vocab = build_vocabulary(["building,roof", "road", "tree", "grass"])
    bbox = "346100,5647750,346250,5647900"  # 300 x 300 px; at native GSD 2 x 2 crops of 224
    outputs = []
    for name, tile in (("a", 64), ("b", 896)):
        settings = PipelineSettings(tile_working=tile, batch_size=3)
        request = SegmentRequest(input=str(OEM), out=str(tmp_path / f"{name}.tif"), bbox=bbox, gsd=0.5)
        prepared = prepare(request, settings=settings)
        try:
            result = segment(prepared, vocab, method, settings=settings)
        finally:
            prepared.source.close()
        outputs.append(gdal.Open(result.out).ReadAsArray())
    assert outputs[0].shape == (300, 300)
    assert np.array_equal(outputs[0], outputs[1])
    assert len(np.unique(outputs[0])) >= 2
