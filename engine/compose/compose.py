"""Compose one CLIP from several: load, score under varying prompts, average, write safetensors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine import __version__
from engine.clip.templates import REMOTE_SENSING_TEMPLATES
from engine.compose.averaging import FORMAT, check_same_architecture, save_composed, weighted_average
from engine.compose.prompt_quality import (
    PromptQuality,
    class_prompts,
    composition_weights,
    quality_from_embeddings,
    text_embeddings,
)
from engine.errors import UserError

#: Prompts that vary when scoring: AerOSeg's four remote-sensing templates and ReSeg-CLIP's own.
COMPOSE_TEMPLATES: tuple[str, ...] = (*REMOTE_SENSING_TEMPLATES, "Aerial photo of a {} in the city")

FORMULA = (
    "q_m = R_m * S_m; R_m = mean_{c,p} (1 + cos(e[c,p], mu[c]))/2; "
    "S_m = mean_{c!=c'} (1 - cos(mu[c], mu[c']))/2; "
    "mu[c] = normalise(mean_p e[c,p]); w_m = q_m / sum_k q_k; theta = sum_m w_m theta_m"
)


@dataclass
class ComposedModel:
    path: Path
    names: list[str]
    architecture: str
    qualities: list[PromptQuality]
    weights: list[float]


def compose_models(
    specs: Sequence[str],
    class_synonyms: Sequence[Sequence[str]],
    out: str | Path,
    *,
    templates: Sequence[str] = COMPOSE_TEMPLATES,
    overwrite: bool = False,
    loader: Callable | None = None,
) -> ComposedModel:
    """Load every CLIP in ``specs`` (registry names or files), score each (prompt_quality), write the
    weighted average to ``out`` (.safetensors). ``loader(spec) → (model, tokenizer, info)`` defaults to
    ``engine.models.loading.load_clip_model``."""
    if len(specs) < 2:
        raise UserError("composition needs at least two models: pass --model two or more times")
    if len(class_synonyms) < 2:
        raise UserError("scoring models needs at least two classes (--classes)")
    if loader is None:
        from engine.models.loading import load_clip_model as loader
    names, architectures, states, qualities, sources = [], [], [], [], []
    prompts = class_prompts(class_synonyms, templates)
    for spec in specs:
        model, tokenizer, info = loader(spec)
        names.append(str(info.get("name") or spec))
        architectures.append(str(info.get("architecture")))
        states.append({k: v.detach().cpu() for k, v in model.state_dict().items()})
        if len(states) == 1 or architectures[-1] == architectures[0]:
            qualities.append(
                quality_from_embeddings(text_embeddings(model.float().eval(), tokenizer, prompts))
            )
        sources.append({"name": names[-1], "file": info.get("file"), "sha256": info.get("sha256")})
        del model
    check_same_architecture(names, architectures, states)
    weights = composition_weights([q.score for q in qualities])
    averaged = weighted_average(states, weights)
    metadata = {
        "format": FORMAT,
        "architecture": architectures[0],
        "engine": f"rs-ovseg {__version__} compose",
        "composition_formula": FORMULA,
        "composition": [
            {
                **source,
                "weight": w,
                "consistency": q.consistency,
                "separation": q.separation,
                "score": q.score,
            }
            for source, w, q in zip(sources, weights, qualities)
        ],
        "classes": [list(c) for c in class_synonyms],
        "templates": list(templates),
    }
    path = save_composed(out, averaged, metadata, overwrite=overwrite)
    return ComposedModel(path, names, architectures[0], qualities, weights)
