"""Text embeddings on disk: reused bit for bit by a fresh process's model, never across weights or
templates, never trusted when damaged, and never in the way when the disk refuses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.clip.text import clear_text_cache, encode_queries
from engine.clip.text_store import (
    TEXT_CACHE_ENV,
    TextEmbeddingStore,
    default_text_store,
    text_tower_fingerprint,
)
from engine.models.architectures import TINY_VIT_16, create_clip, tokenizer_for

TEMPLATES = ["a photo of a {}.", "an aerial image of a {}"]


@pytest.fixture
def counted():
    """A tiny CLIP whose text-encoder passes are counted (sentences per pass)."""
    model = create_clip(TINY_VIT_16, seed=1)
    calls: list[int] = []
    model.token_embedding.register_forward_hook(lambda _m, inputs, _out: calls.append(len(inputs[0])))
    clear_text_cache()
    yield model, tokenizer_for(TINY_VIT_16), calls
    clear_text_cache()


def test_a_new_process_reads_the_vocabulary_back_instead_of_encoding_it(counted, tmp_path):
    model, tokenizer, calls = counted
    store = TextEmbeddingStore(tmp_path)
    first = encode_queries(model, tokenizer, ["water", "tree"], TEMPLATES, store=store)
    assert calls == [4]
    assert len(list(tmp_path.rglob("*.npy"))) == 2
    clear_text_cache()  # what a fresh engine process starts with
    again = encode_queries(model, tokenizer, ["tree", "water", "road"], TEMPLATES, store=store)
    assert calls == [4, 2]  # only "road" went through the encoder
    assert torch.equal(again[:2], first.flip(0))  # bit-identical
    # The same weights in another model object (a reload) share the files.
    twin = create_clip(TINY_VIT_16, seed=1)
    assert text_tower_fingerprint(twin) == text_tower_fingerprint(model)
    assert torch.equal(encode_queries(twin, tokenizer, ["water"], TEMPLATES, store=store)[0], first[0])


def test_other_weights_or_templates_never_reuse_the_files(counted, tmp_path):
    model, tokenizer, calls = counted
    store = TextEmbeddingStore(tmp_path)
    mine = encode_queries(model, tokenizer, ["water"], TEMPLATES, store=store)
    other = create_clip(TINY_VIT_16, seed=2)
    assert text_tower_fingerprint(other) != text_tower_fingerprint(model)
    theirs = encode_queries(other, tokenizer, ["water"], TEMPLATES, store=store)
    assert not torch.allclose(theirs, mine)
    clear_text_cache()
    encode_queries(model, tokenizer, ["water"], TEMPLATES[:1], store=store)
    assert calls == [2, 1]  # the first model: once with two templates, once with one
    assert len(list(tmp_path.rglob("*.npy"))) == 3


def test_only_the_text_tower_is_fingerprinted(counted):
    model, _tokenizer, _calls = counted
    before = text_tower_fingerprint(model)
    changed = create_clip(TINY_VIT_16, seed=1)
    with torch.no_grad():
        next(changed.visual.parameters()).add_(1.0)  # image side only: same text embeddings
    assert text_tower_fingerprint(changed) == before
    changed_again = create_clip(TINY_VIT_16, seed=1)
    with torch.no_grad():
        changed_again.token_embedding.weight[5, 0] += 1e-3
    assert text_tower_fingerprint(changed_again) != before


def _damage(path, how: str) -> None:
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:-7])
    elif how == "pickled":  # an object array: loading it would run pickle
        with path.open("wb") as file:
            np.save(file, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    elif how == "shape":
        np.save(path, np.zeros((2, 3), np.float32))
    elif how == "nan":
        np.save(path, np.full(8, np.nan, np.float32))
    elif how == "dtype":
        np.save(path, np.zeros(8, np.float64))


@pytest.mark.parametrize("how", ["truncated", "pickled", "shape", "nan", "dtype"])
def test_damaged_files_are_encoded_again_and_replaced(counted, tmp_path, how):
    model, tokenizer, calls = counted
    store = TextEmbeddingStore(tmp_path)
    first = encode_queries(model, tokenizer, ["water"], TEMPLATES, store=store)
    (path,) = tmp_path.rglob("*.npy")
    _damage(path, how)
    clear_text_cache()
    again = encode_queries(model, tokenizer, ["water"], TEMPLATES, store=store)
    assert calls == [2, 2]
    assert torch.equal(again, first)
    assert np.array_equal(np.load(path, allow_pickle=False), first[0].numpy())  # replaced, sound


def test_an_unwritable_folder_only_costs_the_encoding(counted, tmp_path, caplog):
    model, tokenizer, calls = counted
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = TextEmbeddingStore(blocker / "text")
    with caplog.at_level("WARNING"):
        first = encode_queries(model, tokenizer, ["water", "tree"], TEMPLATES, store=store)
    assert "cannot cache text embeddings" in caplog.text and caplog.text.count("cannot cache") == 1
    clear_text_cache()
    assert torch.equal(encode_queries(model, tokenizer, ["water", "tree"], TEMPLATES, store=store), first)
    assert calls == [4, 4]


def test_the_default_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(TEXT_CACHE_ENV, "off")
    assert default_text_store() is None
    monkeypatch.setenv(TEXT_CACHE_ENV, str(tmp_path / "embeddings"))
    assert default_text_store().folder == tmp_path / "embeddings"
    monkeypatch.delenv(TEXT_CACHE_ENV)
    monkeypatch.setenv("RS_OVSEG_HOME", str(tmp_path / "home"))
    assert default_text_store().folder == tmp_path / "home" / "text-embeddings"


def test_engine_info_names_the_folder(tmp_path, monkeypatch):
    from engine.cli.diagnostics import engine_report

    monkeypatch.setenv(TEXT_CACHE_ENV, str(tmp_path / "embeddings"))
    assert engine_report()["text_embeddings_cache"] == str(tmp_path / "embeddings")
    monkeypatch.setenv(TEXT_CACHE_ENV, "off")
    assert engine_report()["text_embeddings_cache"] is None
