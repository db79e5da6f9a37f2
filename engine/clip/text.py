"""Query embeddings: each query's text embedding averaged over prompt templates (CLIP's ensembling).

Per query: encode every ``template.format(query)``, L2-normalise each, average, L2-normalise again
(what SegEarth-OV does). Results are cached in memory per model, so segmenting again with the same
vocabulary costs no text-encoder passes.
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


def _encode_sentences(model, tokenizer: Callable, sentences: list[str], device, dtype) -> torch.Tensor:
    """(N, D) L2-normalised text embeddings of ``sentences``, encoded in batches."""
    parts = []
    for start in range(0, len(sentences), TEXT_BATCH_SIZE):
        tokens = tokenizer(sentences[start : start + TEXT_BATCH_SIZE]).to(device)
        features = model.encode_text(tokens).to(dtype)
        parts.append(F.normalize(features.float(), dim=-1))
    return torch.cat(parts)


@torch.no_grad()
def encode_queries(
    model,
    tokenizer: Callable,
    queries: Sequence[str],
    templates: Sequence[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Template-ensembled, L2-normalised text embeddings, shape (Q, D), on ``device`` in ``dtype``.

    ``model`` is an open_clip CLIP (``encode_text``) already on ``device``; ``tokenizer`` maps a list of
    strings to a (N, context) LongTensor. Only queries missing from the cache are encoded, all their
    sentences batched together.
    """
    if not queries:
        raise ValueError("encode_queries needs at least one query")
    device = torch.device(device)
    template_key = tuple(templates)
    per_model = _cache.setdefault(model, {})
    key_of = {query: (query, template_key, str(device), dtype) for query in queries}
    missing = list(dict.fromkeys(query for query in queries if key_of[query] not in per_model))
    if missing:
        sentences = [template.format(query) for query in missing for template in template_key]
        embeddings = _encode_sentences(model, tokenizer, sentences, device, dtype)
        embeddings = embeddings.view(len(missing), len(template_key), -1).mean(dim=1)
        embeddings = F.normalize(embeddings, dim=-1).cpu()
        for query, embedding in zip(missing, embeddings):
            per_model[key_of[query]] = embedding
    return torch.stack([per_model[key_of[query]] for query in queries]).to(device=device, dtype=dtype)
