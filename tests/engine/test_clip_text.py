"""Prompt templates and template-ensembled query embeddings."""

from __future__ import annotations

import pytest
import torch

from engine.clip.templates import (
    IMAGENET_TEMPLATES,
    REMOTE_SENSING_TEMPLATES,
    read_templates_file,
    resolve_templates,
)
from engine.clip.text import clear_text_cache, encode_queries
from engine.errors import UserError
from engine.models.architectures import TINY_VIT_16, create_clip, tokenizer_for


@pytest.fixture(scope="module")
def clip():
    return create_clip(TINY_VIT_16, seed=1), tokenizer_for(TINY_VIT_16)


def test_named_template_sets():
    assert len(IMAGENET_TEMPLATES) == 80 == len(set(IMAGENET_TEMPLATES))
    assert all(template.count("{}") == 1 for template in IMAGENET_TEMPLATES)
    assert "a photo of a {}." in IMAGENET_TEMPLATES
    assert resolve_templates("imagenet") == list(IMAGENET_TEMPLATES)
    assert resolve_templates("remote-sensing") == [
        "a satellite image of a {}",
        "a land use image of a {}",
        "a remote sensing image of a {}",
        "an aerial image of a {}",
    ]
    assert list(REMOTE_SENSING_TEMPLATES) == resolve_templates("remote-sensing")


def test_user_templates_from_file_and_list(tmp_path):
    path = tmp_path / "templates.txt"
    path.write_text("# my prompts\nan orthophoto of a {}\n\n  a drone photo of the {}  \n", encoding="utf-8")
    assert read_templates_file(path) == ["an orthophoto of a {}", "a drone photo of the {}"]
    assert resolve_templates(str(path)) == read_templates_file(path)
    assert resolve_templates(["x {} y"]) == ["x {} y"]


def test_bad_templates_are_user_errors(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("an orthophoto of a {}\nno placeholder here\n", encoding="utf-8")
    with pytest.raises(UserError, match="template 2"):
        read_templates_file(path)
    with pytest.raises(UserError, match="unknown template set"):
        resolve_templates("imagenett")
    with pytest.raises(UserError):
        resolve_templates([])
    with pytest.raises(UserError, match="cannot read"):
        read_templates_file(tmp_path / "missing.txt")


def _slow_query_embedding(model, tokenizer, query, templates):
    """One sentence at a time: normalise each, average, normalise."""
    features = []
    for template in templates:
        feature = model.encode_text(tokenizer([template.format(query)]))[0]
        features.append(feature / feature.norm())
    mean = torch.stack(features).mean(0)
    return mean / mean.norm()


def test_encode_queries_matches_one_by_one_ensembling(clip):
    model, tokenizer = clip
    clear_text_cache()
    templates = ["a photo of a {}.", "an aerial image of a {}", "the {} seen from above"]
    queries = ["building", "low vegetation", "road"]
    with torch.no_grad():
        fast = encode_queries(model, tokenizer, queries, templates, device="cpu", dtype=torch.float32)
        slow = torch.stack([_slow_query_embedding(model, tokenizer, q, templates) for q in queries])
    assert fast.shape == (3, 32)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.norm(dim=1), torch.ones(3))


def test_cache_skips_the_text_encoder(clip, monkeypatch):
    model, tokenizer = clip
    clear_text_cache()
    templates = ["a photo of a {}.", "an aerial image of a {}"]
    calls = []
    # Every pass through the text encoder starts at the token embedding: count sentences there.
    hook = model.token_embedding.register_forward_hook(lambda _m, inputs, _out: calls.append(len(inputs[0])))
    first = encode_queries(model, tokenizer, ["water", "tree"], templates)
    assert calls == [4]  # one batch with every (query, template) sentence
    again = encode_queries(model, tokenizer, ["tree", "water"], templates)
    assert calls == [4]
    torch.testing.assert_close(again, first.flip(0))
    encode_queries(model, tokenizer, ["tree", "car"], templates)
    assert calls == [4, 2]  # only the new query is encoded
    encode_queries(model, tokenizer, ["tree"], templates[:1])
    assert calls == [4, 2, 1]  # other templates, other embedding
    with pytest.raises(ValueError):
        encode_queries(model, tokenizer, [], templates)
    assert torch.isfinite(first).all()
    hook.remove()


def test_padding_is_cut_without_changing_any_embedding(clip, monkeypatch):
    """Sentences of very different lengths, across several batches: the trimmed, length-sorted encoding
    equals open_clip's own full-length ``encode_text``, in the original order."""
    from engine.clip import text

    model, tokenizer = clip
    sentences = [
        "a",
        "a photo of a very very very long and winding road seen from far above the city",
        "water",
        "an aerial image of a building",
        "a low resolution satellite image of a tree",
    ] * 3
    monkeypatch.setattr(text, "TEXT_BATCH_SIZE", 4)
    assert text._trimmable(model)
    with torch.no_grad():
        full = torch.nn.functional.normalize(model.encode_text(tokenizer(sentences)).float(), dim=-1)
    trimmed = text._encode_sentences(model, tokenizer, sentences, "cpu", torch.float32)
    torch.testing.assert_close(trimmed, full, rtol=0, atol=1e-5)


def test_a_model_without_a_causal_mask_is_encoded_at_full_length(clip):
    from engine.clip import text

    model, _ = clip
    original = model.attn_mask
    try:
        model.attn_mask = torch.zeros_like(original)  # bidirectional: padding would matter
        assert not text._trimmable(model)
    finally:
        model.attn_mask = original
    assert text._trimmable(model)
