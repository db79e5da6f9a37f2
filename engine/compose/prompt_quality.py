"""A CLIP model's representational quality under varying text prompts: the composition weights.

ReSeg-CLIP averages the parameters of several remote-sensing CLIPs with weights from "a new weighting
scheme that evaluates representational quality using varying text prompts"; its code is not public.
This module implements that idea in a documented, deterministic form that needs only the checkpoints,
the class names and a prompt set (no images, no labels):

For model m, classes c = 1..C (C ≥ 2) and prompts p = 1..P (templates × the class's synonyms, P ≥ 2):

    e[c, p] = normalise(text_encoder_m(prompt_p(c)))          L2-normalised text embedding
    μ[c]    = normalise(mean_p e[c, p])                       the class's prompt-averaged direction
    R_m     = mean_{c, p} (1 + cos(e[c, p], μ[c])) / 2        prompt consistency, in [0, 1]
    S_m     = mean_{c ≠ c'} (1 − cos(μ[c], μ[c'])) / 2        class separation, in [0, 1]
    q_m     = R_m · S_m                                       quality score, in [0, 1]
    w_m     = q_m / Σ_k q_k                                   composition weight (Σ w = 1)

A good model keeps a class's embedding stable when the wording changes (R high) while keeping classes
apart (S high). A model whose text embeddings collapse (every prompt → the same vector) has S = 0, so
q = 0 and the lowest possible weight; a model that scatters one class's prompts has low R.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.errors import UserError


@dataclass(frozen=True)
class PromptQuality:
    consistency: float  # R
    separation: float  # S
    score: float  # q = R · S


def class_prompts(class_synonyms: Sequence[Sequence[str]], templates: Sequence[str]) -> list[list[str]]:
    """Per class, every template filled with every synonym (the prompts that vary)."""
    return [[t.format(name) for name in names for t in templates] for names in class_synonyms]


@torch.no_grad()
def text_embeddings(model, tokenizer, prompts: list[list[str]]) -> list[torch.Tensor]:
    """Per class, (P_c, D) float64 L2-normalised text embeddings of its prompts."""
    flat = [s for per_class in prompts for s in per_class]
    features = F.normalize(model.encode_text(tokenizer(flat)).double(), dim=-1)
    return list(torch.split(features, [len(p) for p in prompts]))


def quality_from_embeddings(embeddings: Sequence[torch.Tensor] | torch.Tensor) -> PromptQuality:
    """The module docstring's R, S and q from per-class (P_c, D) L2-normalised embeddings (a (C, P, D)
    tensor works too). R averages over every (class, prompt) pair."""
    per_class = [e.double() for e in embeddings]
    n_classes = len(per_class)
    if n_classes < 2 or min(len(e) for e in per_class) < 2:
        raise UserError(
            f"scoring models needs at least 2 classes and 2 prompts per class (got {n_classes} classes, "
            f"{min(len(e) for e in per_class) if per_class else 0} prompts for the smallest)"
        )
    centres = torch.stack([F.normalize(e.mean(dim=0), dim=-1) for e in per_class])  # (C, D)
    agreement = torch.cat([(e @ centre) for e, centre in zip(per_class, centres)])
    consistency = ((1 + agreement) / 2).mean()
    cosines = centres @ centres.T
    off_diagonal = ~torch.eye(n_classes, dtype=torch.bool)
    separation = ((1 - cosines[off_diagonal]) / 2).mean().clamp(min=0.0)
    return PromptQuality(float(consistency), float(separation), float(consistency * separation))


def composition_weights(scores: Sequence[float]) -> list[float]:
    """w_m = q_m / Σ q (module docstring). All-zero scores are a UserError: nothing to prefer."""
    total = float(sum(scores))
    if not total > 0:
        raise UserError(
            "no model separates the classes under the prompts (every quality score is 0): check the class "
            "names, or that the checkpoints are CLIP text encoders"
        )
    return [float(s) / total for s in scores]
