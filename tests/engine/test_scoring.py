"""Scoring against a per-pixel loop: scale, softmax over queries, max over synonyms, argmax, threshold."""

from __future__ import annotations

import math

import torch

from engine.pipeline.scoring import class_probabilities, score


def slow_score(logits, query_to_class, thresholds, scale):
    q, h, w = logits.shape
    n_classes = max(query_to_class) + 1
    labels = torch.zeros(h, w, dtype=torch.uint8)
    confidence = torch.zeros(h, w)
    for y in range(h):
        for x in range(w):
            exps = [math.exp(scale * float(logits[k, y, x])) for k in range(q)]
            probs = [e / sum(exps) for e in exps]
            per_class = [max(p for p, c in zip(probs, query_to_class) if c == ci) for ci in range(n_classes)]
            best = max(range(n_classes), key=lambda ci: per_class[ci])
            confidence[y, x] = per_class[best]
            labels[y, x] = 0 if per_class[best] < thresholds[best] else best + 1
    return labels, confidence


def test_matches_per_pixel_loop_with_synonyms_and_per_class_thresholds():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 9, 11, generator=generator) * 0.05
    query_to_class = [0, 0, 1, 2, 2, 2]
    thresholds = [0.3, 0.45, 0.35]
    labels, confidence = score(logits, query_to_class, thresholds, 50.0)
    ref_labels, ref_conf = slow_score(logits, query_to_class, thresholds, 50.0)
    assert labels.dtype == torch.uint8 and confidence.dtype == torch.float32
    assert torch.equal(labels, ref_labels)
    torch.testing.assert_close(confidence, ref_conf, atol=1e-6, rtol=1e-5)
    assert set(labels.unique().tolist()) >= {0, 1, 3}  # thresholds and classes both exercised


def test_without_synonyms_probabilities_are_the_softmax():
    logits = torch.randn(3, 4, 5)
    probs = class_probabilities(logits, [0, 1, 2], 50.0)
    torch.testing.assert_close(probs, torch.softmax(logits * 50, 0))
    torch.testing.assert_close(probs.sum(0), torch.ones(4, 5))


def test_zero_threshold_never_leaves_pixels_unclassified():
    labels, _ = score(torch.randn(4, 6, 6), [0, 1, 2, 3], [0.0] * 4, 50.0)
    assert (labels > 0).all()
