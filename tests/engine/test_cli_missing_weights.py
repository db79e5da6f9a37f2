"""Without weights and without --random-weights, segment fails with a message that says how to get them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

KOELN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "oem_koeln_50.tif"


@pytest.mark.skipif(not KOELN.exists(), reason="shared test data absent")
def test_missing_clip_weights_name_the_file_the_url_and_the_way_out(tmp_path):
    env = dict(os.environ, RS_OVSEG_HOME=str(tmp_path / "home"), RS_OVSEG_NO_DOWNLOAD="1")
    env.pop("RS_OVSEG_RANDOM_WEIGHTS", None)
    env.pop("RS_OVSEG_OFFLINE_DIR", None)
    out = tmp_path / "out" / "labels.tif"
    out.parent.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "segment",
            str(KOELN),
            "--class",
            "building",
            "--class",
            "road",
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    message = result.stderr
    assert "openai-vit-b-16" in message
    assert "https://" in message
    assert "models import openai-vit-b-16" in message
    assert "RS_OVSEG_OFFLINE_DIR" in message
    assert list(out.parent.iterdir()) == []  # nothing written, not even a sidecar
