"""SAM 3 weights: files in the real ``sam3.pt`` layout (``{"model": {"detector.…", "tracker.…"}}``) are read
without unpickling code, identified, imported and loaded; the gated hub repository's refusals become
instructions; the licence is shown before a download."""

from __future__ import annotations

import io
import json
import pickle

import httpx
import pytest
import torch

from engine.methods.segearth_ov3 import sam3_import

if not sam3_import.sam3_available():
    pytest.skip("sam3 is not installed", allow_module_level=True)

from engine.cli import main
from engine.errors import UserError
from engine.methods.segearth_ov3.architecture import architecture, build_image_model
from engine.models import registry
from engine.models.checkpoints import read_checkpoint
from engine.models.download import download, import_file
from engine.models.loading import load_sam3_model

TINY = architecture("tiny")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RS_OVSEG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RS_OVSEG_OFFLINE_DIR", raising=False)
    monkeypatch.delenv("RS_OVSEG_NO_DOWNLOAD", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture(scope="module")
def tiny_model():
    return build_image_model(TINY, seed=11)


def save_like_sam3_pt(path, detector_state: dict, tracker: bool = True):
    """torch.save of {"model": {...}} with the detector under ``detector.`` and tracker tensors beside."""
    model = {f"detector.{k}": v for k, v in detector_state.items()}
    if tracker:
        model["tracker.maskmem_backbone.mask_downsampler.encoder.0.weight"] = torch.randn(4, 1, 3, 3)
    torch.save({"model": model}, path)
    return path


def test_sam3_pt_is_identified_and_loads_into_the_image_model(tmp_path, tiny_model):
    path = save_like_sam3_pt(tmp_path / "sam3.pt", tiny_model.state_dict())
    checkpoint = read_checkpoint(path)
    assert (checkpoint.kind, checkpoint.architecture, checkpoint.format) == (
        "sam3",
        "tiny",
        "sam3-checkpoint",
    )
    assert any("video tracker" in note for note in checkpoint.notes)
    model, info = load_sam3_model(str(path), TINY)
    assert info["architecture"] == "tiny" and info["sha256"] and not info["random_weights"]
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    # The wrong architecture is named, not half-loaded.
    with pytest.raises(UserError, match="tiny"):
        load_sam3_model(str(path), architecture("full"))


def test_pickled_code_in_a_sam3_file_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this would run",))

    buffer = io.BytesIO()
    torch.save({"model": {"detector.x": torch.zeros(1)}, "hook": Payload()}, buffer, pickle_protocol=2)
    path = tmp_path / "evil.pt"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UserError, match="refused"):
        read_checkpoint(path)
    assert pickle.HIGHEST_PROTOCOL >= 2


def full_size_shell(path):
    """A file in sam3.pt's layout whose ViT has the full model's width and 32 blocks, but only a few
    tensors (the real one is 3.4 GB): enough to be identified as the full architecture."""
    trunk = "backbone.vision_backbone.trunk."
    state = {trunk + "patch_embed.proj.weight": torch.zeros(1024, 3, 14, 14)}
    state.update({f"{trunk}blocks.{i}.norm1.weight": torch.zeros(1) for i in range(32)})
    return save_like_sam3_pt(path, state)


def test_models_import_places_a_file_obtained_elsewhere(tmp_path, capsys, tiny_model):
    entry = registry.get_entry("sam3")
    tiny_file = save_like_sam3_pt(tmp_path / "tiny.pt", tiny_model.state_dict())
    with pytest.raises(UserError, match="Nothing was imported"):
        import_file(entry, tiny_file)
    shell = full_size_shell(tmp_path / "downloaded-elsewhere.pt")
    assert main(["models", "import", "sam3", str(shell)]) == 0
    assert "imported" in capsys.readouterr().out
    assert registry.get_entry("sam3").filenames == ("sam3.pt",)
    assert (tmp_path / "home" / "weights" / "sam3" / "sam3.pt").is_file()


def test_an_incomplete_file_is_an_error_not_random_weights(tmp_path, tiny_model):
    state = dict(tiny_model.state_dict())
    del state["segmentation_head.semantic_seg_head.weight"]
    path = save_like_sam3_pt(tmp_path / "partial.pt", state)
    with pytest.raises(UserError, match="lacks 1 tensors of SAM 3's image model"):
        load_sam3_model(str(path), TINY)


def refusal(status: int):
    from huggingface_hub.errors import GatedRepoError

    request = httpx.Request("HEAD", "https://huggingface.co/facebook/sam3/resolve/main/sam3.pt")
    return GatedRepoError(f"{status} Client Error", response=httpx.Response(status, request=request))


@pytest.mark.parametrize(
    "token, status, says", [(None, 401, "no token was given"), ("hf_x", 403, "no access")]
)
def test_gated_hub_refusal_says_how_to_request_access(monkeypatch, token, status, says):
    import huggingface_hub

    seen = {}

    def refuse(url, token=None, **kwargs):
        seen["token"] = token
        raise refusal(status)

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", refuse)
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    with pytest.raises(UserError) as error:
        download(registry.get_entry("sam3"))
    message = str(error.value)
    assert says in message and "request access" in message and "HF_TOKEN" in message
    assert "SAM License" in message and "https://huggingface.co/facebook/sam3" in message
    assert seen["token"] == token


def test_download_states_the_licence_first(monkeypatch, capsys):
    monkeypatch.setenv("RS_OVSEG_NO_DOWNLOAD", "1")
    assert main(["models", "download", "sam3", "--token", "hf_x"]) != 0
    err = capsys.readouterr().err
    assert err.index("licence SAM License") < err.index("downloads are disabled")


def worker_replies(requests):
    from engine.cli.worker import Channel, Worker

    stream = io.StringIO()
    worker = Worker(Channel(stream))
    for request in requests:
        worker.handle(request)
    replies = [json.loads(line) for line in stream.getvalue().splitlines()]
    return {r["id"]: r for r in replies if r["event"] in ("result", "error")}


def test_the_estimate_names_missing_weights_and_the_worker_downloads(tmp_path, monkeypatch):
    raster = tmp_path / "in.tif"
    from osgeo import gdal

    dataset = gdal.GetDriverByName("GTiff").Create(str(raster), 64, 48, 3)
    dataset.SetGeoTransform((500000.0, 1.0, 0.0, 5650000.0, 0.0, -1.0))
    dataset = None
    base = {"input": str(raster), "method": "segearth-ov3", "classes": ["road"]}
    monkeypatch.setenv("RS_OVSEG_NO_DOWNLOAD", "1")
    replies = worker_replies(
        [
            {"id": "e1", "command": "estimate", "args": base},
            {"id": "e2", "command": "estimate", "args": {**base, "random_weights": True}},
            {"id": "d1", "command": "download", "args": {"name": "sam3"}},
        ]
    )
    missing = replies["e1"]["result"]["missing_weights"]
    assert [m["name"] for m in missing] == ["sam3"] and missing[0]["gated"] is True
    assert "SAM License" in missing[0]["licence"]
    assert replies["e2"]["result"]["missing_weights"] == []
    # The expected time comes from the full-size bench figure until a run here measures one.
    assert replies["e1"]["result"]["time"]["case"].startswith("cpu/segearth-ov3/tile/")
    assert replies["d1"]["kind"] == "user" and "downloads are disabled" in replies["d1"]["message"]
    # A file in an offline folder counts as present.
    offline = tmp_path / "offline"
    offline.mkdir()
    full_size_shell(offline / "sam3.pt")
    monkeypatch.setenv("RS_OVSEG_OFFLINE_DIR", str(offline))
    replies = worker_replies(
        [
            {"id": "e3", "command": "estimate", "args": base},
            {"id": "d2", "command": "download", "args": {"name": "sam3"}},
        ]
    )
    assert replies["e3"]["result"]["missing_weights"] == []
    assert replies["d2"]["result"]["path"] == str(offline / "sam3.pt")
