"""Every published checkpoint format, written by the test in its exact layout, loads through the loaders.

Files hold random tensors under the real key names and nesting, in tiny architectures.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from engine.errors import UserError
from engine.models.architectures import TINY_VIT_14, TINY_VIT_16, create_clip
from engine.models.checkpoints import infer_clip_architecture, infer_sam_architecture, read_checkpoint
from engine.models.loading import load_clip_model, load_sam_model, load_upsampler_model
from engine.models.sam_architectures import create_sam

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FEATUP = SHARED_DATA / "featup_jbu_stack_clip_vitb16_cocostuff.ckpt"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RS_OVSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RS_OVSEG_NO_DOWNLOAD", "1")
    monkeypatch.delenv("RS_OVSEG_OFFLINE_DIR", raising=False)


@pytest.fixture(scope="module")
def tiny_clip():
    return create_clip(TINY_VIT_16, seed=3)


def _same_weights(model, reference) -> bool:
    ours, theirs = model.state_dict(), reference.state_dict()
    return set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k].to(ours[k].dtype)) for k in ours)


def test_openclip_state_dict_pt_and_safetensors(tmp_path, tiny_clip):
    from safetensors.torch import save_file

    pt = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(tiny_clip.state_dict(), pt)
    st = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_clip.state_dict().items()}, str(st))
    for path, container in ((pt, "torch-zip"), (st, "safetensors")):
        model, tokenizer, info = load_clip_model(str(path))
        assert _same_weights(model, tiny_clip)
        assert info["architecture"] == TINY_VIT_16 and info["load_report"]["format"] == "openclip-state-dict"
        assert read_checkpoint(path).container == container
        assert tokenizer(["a roof"]).shape == (1, 77)


def test_remoteclip_plain_state_dict_in_fp16(tmp_path, tiny_clip):
    # RemoteCLIP files are a bare state dict (torch.save(model.state_dict())); half precision here.
    path = tmp_path / "RemoteCLIP-ViT-B-32.pt"
    torch.save({k: v.half() for k, v in tiny_clip.state_dict().items()}, path)
    model, _, info = load_clip_model(str(path))
    ref = {k: v.half().float() for k, v in tiny_clip.state_dict().items()}
    assert all(torch.equal(model.state_dict()[k], ref[k]) for k in ref)
    assert next(model.parameters()).dtype == torch.float32
    assert info["sha256"] and len(info["sha256"]) == 64


def test_openai_torchscript_archive_is_read_without_running_it(tmp_path, tiny_clip):
    path = tmp_path / "ViT-B-16.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace_module(
            tiny_clip, {"encode_image": (torch.zeros(1, 3, 224, 224),)}, check_trace=False
        )
    traced.save(str(path))
    checkpoint = read_checkpoint(path)
    assert checkpoint.container == "torchscript" and checkpoint.format == "openai-torchscript"
    model, _, info = load_clip_model(str(path))
    assert _same_weights(model, tiny_clip)
    assert "attn_mask" in " ".join(info["load_report"]["notes"])


def test_georsclip_loads_non_strictly_with_a_report(tmp_path, tiny_clip):
    state = dict(tiny_clip.state_dict())
    del state["logit_scale"]
    state["text_decoder.extra"] = torch.zeros(3)
    path = tmp_path / "RS5M_ViT-B-32.pt"
    torch.save(state, path)
    with pytest.raises(UserError, match="missing keys"):
        load_clip_model(str(path))
    model, _, info = load_clip_model(str(path), strict=False)
    assert info["load_report"]["missing"] == ["logit_scale"]
    assert info["load_report"]["unexpected"] == ["text_decoder.extra"]
    assert torch.equal(model.visual.conv1.weight, tiny_clip.visual.conv1.weight)
    # Non-strict never tolerates a missing image tower: that would leave random weights in use.
    del state["visual.proj"]
    torch.save(state, path)
    with pytest.raises(UserError, match=r"visual\.proj"):
        load_clip_model(str(path), strict=False)


def test_skyclip_training_checkpoint_with_module_prefix(tmp_path, tiny_clip):
    optimizer = torch.optim.AdamW(tiny_clip.parameters(), lr=1e-9)
    path = tmp_path / "epoch_20.pt"
    torch.save(
        {
            "epoch": 20,
            "name": "SkyCLIP_ViT_L14_top30pct_filtered_by_CLIP_laion_RS",
            "state_dict": {f"module.{k}": v for k, v in tiny_clip.state_dict().items()},
            "optimizer": optimizer.state_dict(),
        },
        path,
    )
    checkpoint = read_checkpoint(path)
    assert checkpoint.format == "openclip-training-checkpoint" and checkpoint.details["epoch"] == 20
    model, _, info = load_clip_model(str(path))
    assert _same_weights(model, tiny_clip)
    assert any("module." in note for note in info["load_report"]["notes"])


def test_sam_pth(tmp_path):
    reference = create_sam("tiny", seed=5)
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(reference.state_dict(), path)
    sam, info = load_sam_model(str(path))
    assert _same_weights(sam, reference) and info["architecture"] == "tiny"
    assert read_checkpoint(path).format == "sam-state-dict"


def test_lightning_upsampler_jbu_one(tmp_path):
    from engine.upsamplers.stacks import build_upsampler

    torch.manual_seed(0)
    reference = build_upsampler("jbu_one", 16)
    for parameter in reference.parameters():
        parameter.data.normal_()
    state = {f"upsampler.{k}": v for k, v in reference.state_dict().items()}
    state["downsampler.kernel"] = torch.zeros(4)  # trained alongside, not part of the upsampler
    path = tmp_path / "xclip_jbu_one_million_aid.ckpt"
    torch.save(
        {"epoch": 3, "global_step": 100, "pytorch-lightning_version": "1.9.4", "state_dict": state}, path
    )
    module, info = load_upsampler_model(str(path))
    assert _same_weights(module, reference)
    assert info["architecture"] == "jbu_one" and info["dim"] == 16
    assert any("downsampler" in note for note in info["load_report"]["notes"])


@pytest.mark.skipif(not FEATUP.is_file(), reason="shared test data absent")
def test_real_featup_checkpoint_loads_from_an_offline_folder(tmp_path):
    offline = tmp_path / "offline"
    offline.mkdir()
    (offline / "clip_jbu_stack_cocostuff.ckpt").symlink_to(FEATUP)
    module, info = load_upsampler_model("featup-jbu-stack-vit-b-16", offline_dir=offline)
    assert info["sha256"] == "38ce7487c648d01cf37beb005f464410c498008fea03e6a68a269d79e4e29622"
    assert info["architecture"] == "jbu_stack" and info["dim"] == 512
    raw = torch.load(FEATUP, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(
        module.state_dict()["up1.range_proj.0.weight"], raw["upsampler.up1.range_proj.0.weight"]
    )


def test_wrong_architecture_names_both(tmp_path, tiny_clip):
    path = tmp_path / "clip.pt"
    torch.save(tiny_clip.state_dict(), path)
    with pytest.raises(UserError) as error:
        load_clip_model(str(path), architecture=TINY_VIT_14)
    assert TINY_VIT_16 in str(error.value) and TINY_VIT_14 in str(error.value)
    sam_path = tmp_path / "sam.pth"
    torch.save(create_sam("tiny").state_dict(), sam_path)
    with pytest.raises(UserError) as error:
        load_sam_model(str(sam_path), architecture="vit_b")
    assert "tiny" in str(error.value) and "vit_b" in str(error.value)
    with pytest.raises(UserError, match="not clip weights"):
        load_clip_model(str(sam_path))


def test_missing_registry_weights_name_url_and_commands():
    with pytest.raises(UserError) as error:
        load_sam_model("sam-vit-b")
    message = str(error.value)
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in message
    assert "python -m engine models import sam-vit-b" in message and "RS_OVSEG_OFFLINE_DIR" in message


def test_random_weights_are_seeded_and_flagged():
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        first, _, info = load_clip_model(None, architecture=TINY_VIT_16, random_weights=True, seed=7)
    with pytest.warns(UserWarning):
        second, _, _ = load_clip_model(None, architecture=TINY_VIT_16, random_weights=True, seed=7)
    assert info["random_weights"] is True and info["sha256"] is None
    assert _same_weights(first, second)
    assert load_upsampler_model("none") == (None, {"name": "none"})


@pytest.mark.parametrize(
    ("name", "width"), [("ViT-B-16", 768), ("ViT-B-32", 768), ("ViT-L-14", 1024), ("ViT-H-14", 1280)]
)
def test_architecture_inferred_from_real_shapes(name, width):
    import open_clip

    with torch.device("meta"):  # shapes without memory: full-size models in milliseconds
        model = open_clip.create_model(name, device="meta")
    state = model.state_dict()
    assert state["visual.conv1.weight"].shape[0] == width
    assert infer_clip_architecture(state) == name


def test_sam_architecture_inferred_from_real_shapes():
    from segment_anything.build_sam import _build_sam

    from engine.models.sam_architectures import SAM_ARCHITECTURES

    for name, spec in SAM_ARCHITECTURES.items():
        with torch.device("meta"):
            sam = _build_sam(
                spec.encoder_embed_dim,
                spec.encoder_depth,
                spec.encoder_num_heads,
                list(spec.encoder_global_attn_indexes),
            )
        assert infer_sam_architecture(sam.state_dict()) == name


# --- refusing pickled code ------------------------------------------------------------------------


class _CreatesFile:
    """Unpickling this calls open(path, "w"): a file appears if a loader runs pickled code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _malicious_files(tmp_path, marker) -> list[Path]:
    zipped = tmp_path / "evil_zip.pt"
    torch.save({"state_dict": {"visual.conv1.weight": _CreatesFile(marker)}}, zipped)
    legacy = tmp_path / "evil_legacy.pth"
    torch.save(_CreatesFile(marker), legacy, _use_new_zipfile_serialization=False)
    scripted = tmp_path / "evil_script.pt"  # looks like a TorchScript archive to the reader
    with zipfile.ZipFile(scripted, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(_CreatesFile(marker), protocol=2))
        archive.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
        archive.writestr("evil/code/__torch__.py", "")
    lightning = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"upsampler.fixup_proj.1.weight": _CreatesFile(marker)}}, lightning)
    return [zipped, legacy, scripted, lightning]


def test_payload_is_live_so_the_refusal_test_can_fail(tmp_path):
    marker = tmp_path / "proof"
    pickle.loads(pickle.dumps(_CreatesFile(marker)))
    assert marker.exists()


def test_every_loader_refuses_pickled_code_and_creates_nothing(tmp_path):
    from engine.cli import main

    marker = tmp_path / "pwned"
    loaders = [
        lambda p: load_clip_model(str(p)),
        lambda p: load_sam_model(str(p)),
        lambda p: load_upsampler_model(str(p)),
        lambda p: read_checkpoint(p),
    ]
    for path in _malicious_files(tmp_path, marker):
        for loader in loaders:
            with pytest.raises(UserError, match="refused"):
                loader(path)
        assert main(["models", "check", str(path)]) == 1
        assert main(["models", "import", "sam-vit-b", str(path)]) == 1
        assert not marker.exists()
