"""Prompt templates that turn a query word into sentences for CLIP's text encoder.

A template is a sentence with one ``{}`` where the query goes ("a photo of a {}."). Three sources:
the named sets below, a plain-text file (one template per line), or a list given by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.errors import UserError

#: OpenAI's 80 prompt templates for ImageNet zero-shot classification (CLIP's prompt-engineering
#: notebook); SegEarth-OV averages its text embeddings over exactly these.
IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

#: AerOSeg's four remote-sensing templates.
REMOTE_SENSING_TEMPLATES: tuple[str, ...] = (
    "a satellite image of a {}",
    "a land use image of a {}",
    "a remote sensing image of a {}",
    "an aerial image of a {}",
)

#: Named template sets a user can pick by name.
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "imagenet": IMAGENET_TEMPLATES,
    "remote-sensing": REMOTE_SENSING_TEMPLATES,
}


def validate_templates(templates: Sequence[str], *, source: str = "templates") -> list[str]:
    """Check that every template has exactly one ``{}`` placeholder; returns them as a list."""
    checked = []
    for number, template in enumerate(templates, start=1):
        if not isinstance(template, str):
            raise UserError(f"{source}: template {number} is not text: {template!r}")
        if template.count("{}") != 1:
            raise UserError(
                f"{source}: template {number} ({template!r}) must contain exactly one '{{}}' "
                "where the class name goes, e.g. 'an aerial image of a {}'"
            )
        checked.append(template)
    if not checked:
        raise UserError(f"{source}: no templates given; name a set ({', '.join(TEMPLATE_SETS)}) or list some")
    return checked


def read_templates_file(path: str | Path) -> list[str]:
    """Templates from a UTF-8 text file, one per line; blank lines and lines starting with # are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot read the template file {str(path)!r}: {error.strerror or error}") from error
    lines = [line.strip() for line in text.splitlines()]
    return validate_templates([line for line in lines if line and not line.startswith("#")], source=str(path))


def resolve_templates(spec: str | Path | Sequence[str]) -> list[str]:
    """Templates from a set name ("imagenet", "remote-sensing"), a file path, or a list of templates."""
    if isinstance(spec, Path):
        return read_templates_file(spec)
    if isinstance(spec, str):
        if spec in TEMPLATE_SETS:
            return list(TEMPLATE_SETS[spec])
        if Path(spec).is_file():
            return read_templates_file(spec)
        raise UserError(
            f"unknown template set {spec!r}: use one of {', '.join(TEMPLATE_SETS)} or the path of a text "
            "file with one template per line"
        )
    return validate_templates(list(spec))
