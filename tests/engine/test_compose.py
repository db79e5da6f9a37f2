"""Model composition: exact averaging, weights that sum to 1, collapsed text encoders weighted lowest,
refusals, and a composed file that loads back as a CLIP."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.cli import main as cli_main
from engine.compose.averaging import check_same_architecture, weighted_average
from engine.compose.compose import compose_models
from engine.compose.prompt_quality import composition_weights, quality_from_embeddings
from engine.errors import UserError
from engine.models.architectures import TINY_VIT_14, TINY_VIT_16, create_clip, tokenizer_for

CLASSES = [["building", "roof"], ["road"], ["tree"], ["water"]]
TEMPLATES = ["a satellite image of a {}", "an aerial image of a {}", "a photo of the {} seen from above"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Every test here runs tiny models (see conftest)."""


def collapse_text(model):
    """Make every prompt embed to the same vector: the last text block's output no longer depends on
    its input (LayerNorm with zero gain gives a constant), so the text encoder collapses."""
    with torch.no_grad():
        model.ln_final.weight.zero_()
        model.ln_final.bias.normal_()
    return model


def fake_loader(models: dict):
    def load(spec):
        model, arch = models[spec]
        return model, tokenizer_for(arch), {"name": spec, "architecture": arch, "file": None, "sha256": None}

    return load


def test_quality_formula_against_a_loop():
    torch.manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(3, 4, 8, dtype=torch.float64), dim=-1)
    q = quality_from_embeddings(e)
    centres = [torch.nn.functional.normalize(e[c].mean(0), dim=0) for c in range(3)]
    r = sum((1 + float(e[c, p] @ centres[c])) / 2 for c in range(3) for p in range(4)) / 12
    pairs = [(a, b) for a in range(3) for b in range(3) if a != b]
    s = sum((1 - float(centres[a] @ centres[b])) / 2 for a, b in pairs) / len(pairs)
    assert q.consistency == pytest.approx(r) and q.separation == pytest.approx(s)
    assert q.score == pytest.approx(r * s)


def test_weights_sum_to_one_and_all_zero_scores_are_refused():
    assert sum(composition_weights([0.2, 0.5, 0.1])) == pytest.approx(1.0)
    with pytest.raises(UserError, match="every quality score is 0"):
        composition_weights([0.0, 0.0])


def test_averaging_is_exact():
    torch.manual_seed(1)
    states = [
        {"a": torch.randn(3, 2), "b": torch.randn(4).half(), "n": torch.tensor([1, 2])} for _ in range(3)
    ]
    for state in states[1:]:
        state["n"] = states[0]["n"].clone()
    weights = [0.5, 0.3, 0.2]
    out = weighted_average(states, weights)
    for key in ("a", "b"):
        expected = sum(w * s[key].double() for w, s in zip(weights, states)).to(states[0][key].dtype)
        assert out[key].dtype == states[0][key].dtype
        assert torch.equal(out[key], expected)
    assert torch.equal(out["n"], states[0]["n"])
    states[2]["n"] = torch.tensor([9, 9])
    with pytest.raises(UserError, match="non-numeric parameter n"):
        weighted_average(states, weights)


def test_collapsed_model_gets_the_lowest_weight_and_the_file_is_the_weighted_average(tmp_path):
    models = {
        "good-a": (create_clip(TINY_VIT_16, seed=1), TINY_VIT_16),
        "collapsed": (collapse_text(create_clip(TINY_VIT_16, seed=2)), TINY_VIT_16),
        "good-b": (create_clip(TINY_VIT_16, seed=3), TINY_VIT_16),
    }
    states = {k: {n: t.clone() for n, t in m.state_dict().items()} for k, (m, _) in models.items()}
    out = tmp_path / "composed.safetensors"
    result = compose_models(list(models), CLASSES, out, templates=TEMPLATES, loader=fake_loader(models))
    assert sum(result.weights) == pytest.approx(1.0)
    collapsed = result.names.index("collapsed")
    assert result.weights[collapsed] == min(result.weights)
    assert result.qualities[collapsed].separation == pytest.approx(0.0, abs=1e-9)
    assert all(w > 0 for i, w in enumerate(result.weights) if i != collapsed)

    with safe_open(str(out), "pt") as handle:
        metadata = handle.metadata()
        key = "visual.transformer.resblocks.0.attn.in_proj_weight"
        stored = handle.get_tensor(key)
    assert metadata["architecture"] == TINY_VIT_16 and metadata["format"] == "open_clip"
    recorded = json.loads(metadata["composition"])
    assert [r["weight"] for r in recorded] == result.weights
    expected = sum(w * states[n][key].double() for n, w in zip(result.names, result.weights)).float()
    assert torch.equal(stored, expected)

    # Deterministic: the same inputs give the same weights.
    again = compose_models(
        list(models), CLASSES, tmp_path / "again.safetensors", templates=TEMPLATES, loader=fake_loader(models)
    )
    assert again.weights == result.weights


def test_refuses_one_model_and_mixed_architectures(tmp_path):
    models = {
        "a": (create_clip(TINY_VIT_16, seed=1), TINY_VIT_16),
        "b": (create_clip(TINY_VIT_14, seed=1), TINY_VIT_14),
    }
    with pytest.raises(UserError, match="at least two models"):
        compose_models(["a"], CLASSES, tmp_path / "x.safetensors", loader=fake_loader(models))
    with pytest.raises(UserError, match="different architectures"):
        compose_models(
            ["a", "b"], CLASSES, tmp_path / "x.safetensors", templates=TEMPLATES, loader=fake_loader(models)
        )
    state = {"w": torch.zeros(2)}
    with pytest.raises(UserError, match="differ in the shape of w"):
        check_same_architecture(["a", "b"], ["X", "X"], [state, {"w": torch.zeros(3)}])


def test_cli_composes_checkpoint_files_and_the_result_loads_as_clip(tmp_path, capsys):
    files = []
    for seed in (1, 2):
        path = tmp_path / f"clip{seed}.safetensors"
        state = {k: v.contiguous() for k, v in create_clip(TINY_VIT_16, seed=seed).state_dict().items()}
        save_file(state, str(path))
        files.append(str(path))
    out = tmp_path / "composed.safetensors"
    argv = [
        "compose",
        "--model",
        files[0],
        "--model",
        files[1],
        "--classes",
        "building,roof",
        "road",
        "tree",
        "--out",
        str(out),
    ]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "weight" in printed and files[0] in printed
    assert cli_main(argv) == 1  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    from engine.models.loading import load_clip_model

    model, _, info = load_clip_model(str(out))
    assert info["architecture"] == TINY_VIT_16
    with safe_open(str(out), "pt") as handle:
        key = "visual.proj"
        torch.testing.assert_close(model.state_dict()[key], handle.get_tensor(key))
