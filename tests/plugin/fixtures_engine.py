"""The real engine worker on tiny random-weight models, for plugin tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rs_ovseg_qgis.core import engine_service
from rs_ovseg_qgis.definitions import RANDOM_WEIGHTS_ENV

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
KOELN = SHARED_DATA / "oem_koeln_50.tif"
# A 3-layer CLIP of width 64, bilinear upsampling, 4 prompt templates: seconds per run on two CPU cores.
TINY_ENGINE_OPTIONS = {"clip": "RSOVSeg-Tiny-ViT-16", "upsampler": "none", "templates": "remote-sensing"}
TINY_ENGINE_OPTIONS_JSON = json.dumps(TINY_ENGINE_OPTIONS)
needs_koeln = pytest.mark.skipif(not KOELN.exists(), reason=f"{KOELN} is absent")


@pytest.fixture(scope="module")
def random_weight_engine():
    """The shared engine client, its worker started fresh with RS_OVSEG_RANDOM_WEIGHTS=1.

    Module-scoped so that the tests of one file share a worker and its loaded models (as QGIS does).
    """
    before = os.environ.get(RANDOM_WEIGHTS_ENV)
    os.environ[RANDOM_WEIGHTS_ENV] = "1"
    engine_service.shutdown()
    yield engine_service.shared_client()
    engine_service.shutdown()
    if before is None:
        os.environ.pop(RANDOM_WEIGHTS_ENV, None)
    else:
        os.environ[RANDOM_WEIGHTS_ENV] = before
