"""Query embeddings: each query's text embedding averaged over prompt templates (CLIP's ensembling).

Per query: encode every ``template.format(query)``, L2-normalise each, average, L2-normalise again
(what SegEarth-OV does). Results are cached in memory per model, so segmenting again with the same
vocabulary costs no text-encoder passes, and, given a store (``engine.clip.text_store``), on disk, so
a new engine process does not encode a known vocabulary again either.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

#: How many sentences go through the text encoder in one batch.
TEXT_BATCH_SIZE = 256

# model -> {(query, templates, device, dtype): embedding (D,) on the CPU in float32}. Weak keys: a model
# that is garbage-collected takes its cache entries with it, so a new model at a reused address starts clean.
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def clear_text_cache() -> None:
    """Forget every cached query embedding (e.g. after changing a model's weights in place)."""
    _cache.clear()


def _trimmable(model) -> bool:
    """True for open_clip's CLIP text tower with a causal mask and end-of-text pooling: then a sentence's
    embedding depends only on its tokens up to the end-of-text token, and padding may be cut off."""
    mask = getattr(model, "attn_mask", None)
    return (
        hasattr(model, "token_embedding")
        and mask is not None
        and getattr(model, "text_pool_type", None) in ("argmax", "eos")
        and _is_causal(mask)
    )


def _is_causal(mask: torch.Tensor) -> bool:
    """-inf strictly above the diagonal, finite on and below it."""
    above = torch.ones_like(mask, dtype=torch.bool).triu(1)
    return bool(torch.isinf(mask[above]).all()) and bool(torch.isfinite(mask[~above]).all())


def _encode_trimmed(model, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ``encode_text`` on tokens cut after the batch's last non-padding token.

    Why: CLIP pads every prompt to 77 tokens while prompts end by token ~12; the causal mask means no
    token before the end-of-text token sees the padding, so cutting it gives the same embedding for
    about a sixth of the work. Shapes: tokens (N, 77) -> (N, D).
    """
    from open_clip.transformer import text_global_pool

    length = int((tokens != 0).sum(dim=1).max())
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    projection = model.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


def _encode_sentences(model, tokenizer: Callable, sentences: list[str], device, dtype) -> torch.Tensor:
    """(N, D) L2-normalised text embeddings of ``sentences``, encoded in batches of similar length."""
    tokens = tokenizer(sentences)
    trim = _trimmable(model)
    # Batches of similar length lose least to padding; the order is restored at the end.
    order = torch.argsort((tokens != 0).sum(dim=1), stable=True) if trim else torch.arange(len(tokens))
    parts = []
    for start in range(0, len(sentences), TEXT_BATCH_SIZE):
        batch = tokens[order[start : start + TEXT_BATCH_SIZE]].to(device)
        features = _encode_trimmed(model, batch) if trim else model.encode_text(batch)
        parts.append(F.normalize(features.to(dtype).float(), dim=-1))
    embeddings = torch.empty_like(torch.cat(parts))
    embeddings[order.to(embeddings.device)] = torch.cat(parts)
    return embeddings


@torch.no_grad()
def encode_queries(
    model,
    tokenizer: Callable,
    queries: Sequence[str],
    templates: Sequence[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    store=None,
) -> torch.Tensor:
    """Template-ensembled, L2-normalised text embeddings, shape (Q, D), on ``device`` in ``dtype``.

    ``model`` is an open_clip CLIP (``encode_text``) already on ``device``; ``tokenizer`` maps a list of
    strings to a (N, context) LongTensor. Only queries missing from the cache are encoded, all their
    sentences batched together. ``store`` (a ``TextEmbeddingStore``): looked up before encoding, and
    given what was encoded.
    """
    if not queries:
        raise ValueError("encode_queries needs at least one query")
    device = torch.device(device)
    template_key = tuple(templates)
    per_model = _cache.setdefault(model, {})
    key_of = {query: (query, template_key, str(device), dtype) for query in queries}
    missing = list(dict.fromkeys(query for query in queries if key_of[query] not in per_model))
    stored_keys = {}
    if missing and store is not None:
        from engine.clip.text_store import text_tower_fingerprint

        fingerprint = text_tower_fingerprint(model)
        stored_keys = {q: store.key(fingerprint, q, template_key, device, dtype) for q in missing}
        for query in list(missing):
            embedding = store.load(stored_keys[query])
            if embedding is not None:
                per_model[key_of[query]] = embedding
                missing.remove(query)
    if missing:
        sentences = [template.format(query) for query in missing for template in template_key]
        embeddings = _encode_sentences(model, tokenizer, sentences, device, dtype)
        embeddings = embeddings.view(len(missing), len(template_key), -1).mean(dim=1)
        embeddings = F.normalize(embeddings, dim=-1).cpu()
        for query, embedding in zip(missing, embeddings):
            per_model[key_of[query]] = embedding
            if store is not None:
                store.save(stored_keys[query], embedding)
    return torch.stack([per_model[key_of[query]] for query in queries]).to(device=device, dtype=dtype)
