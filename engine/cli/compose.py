"""``python -m engine compose``: one CLIP from a weighted parameter average of several (ReSeg-CLIP).

Weights come from each model's text-embedding quality under varying prompts; the formula is in
``engine.compose.prompt_quality``. Deterministic: the same checkpoints, classes and prompts give the
same file.
"""

from __future__ import annotations

import argparse
import sys

from engine.compose.compose import COMPOSE_TEMPLATES, compose_models
from engine.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME_OR_FILE",
        help="a CLIP registry name or checkpoint file; give two or more, all of one architecture",
    )
    parser.add_argument(
        "--classes",
        nargs="+",
        required=True,
        metavar="CLASS",
        help="class names the models are scored on; 'building,roof' gives a class with synonyms",
    )
    parser.add_argument(
        "--templates",
        default=None,
        help="prompt templates that vary while scoring: a set name (imagenet, remote-sensing) or a file with "
        "one template per line; default: the four remote-sensing templates plus ReSeg-CLIP's",
    )
    parser.add_argument(
        "--out", required=True, metavar="FILE.safetensors", help="where to write the composed model"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    from engine.clip.templates import resolve_templates

    try:
        classes = [[part.strip() for part in entry.split(",") if part.strip()] for entry in args.classes]
        if any(not names for names in classes):
            raise UserError("--classes has an empty entry")
        templates = resolve_templates(args.templates) if args.templates else list(COMPOSE_TEMPLATES)
        result = compose_models(args.model, classes, args.out, templates=templates, overwrite=args.overwrite)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"composed {len(result.names)} {result.architecture} models into {result.path}")
    print(f"{'weight':>8}  {'score':>8}  {'consistency':>11}  {'separation':>10}  model")
    for name, weight, quality in zip(result.names, result.weights, result.qualities):
        print(
            f"{weight:8.6f}  {quality.score:8.6f}  {quality.consistency:11.6f}  "
            f"{quality.separation:10.6f}  {name}"
        )
    return 0
