"""The published benchmark protocols: per dataset, where its images and labels lie, how labels are
read and which settings the reference used (``resources/benchmarks/<dataset>.json``).

Each file was written from the reference configs (``likyoo/SegEarth-OV`` ``configs/cfg_*.py`` and
``cls_*.txt``, mmseg's dataset classes for suffixes and ``reduce_zero_label``; see its ``source``):
``images``/``labels`` (folders under the dataset root), ``image_suffix``/``label_suffix`` (an image
``NAME<image_suffix>`` pairs with the label ``NAME<label_suffix>``, as mmseg pairs them),
``reduce_zero_label``, ``ignore_index``, ``background_index`` (the class pixels below the probability
threshold fall to: the reference's ``bg_idx``), ``resize_long_side`` (the reference's
``Resize(scale=(448, 448), keep_ratio=True)``), ``prob_thd`` and ``published_miou`` per method, and
``vocabulary`` (a preset in ``resources/presets``: class names with their synonyms, the cls_*.txt).
A dataset without split folders (DLRSD) names its splits by ``split_stems``: a regular expression per
split that an image's file stem must match (``re.search``). ``background_index`` null: the dataset has
no background class, and pixels below a threshold count as predicted as no class.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
PROTOCOL_DIR = RESOURCES / "benchmarks"
PRESET_DIR = RESOURCES / "presets"
DATASETS = ("openearthmap", "loveda", "isaid", "potsdam", "vaihingen", "uavid", "udd5", "vdd", "dlrsd")


@dataclass(frozen=True)
class Protocol:
    dataset: str
    data: dict  # the protocol file as read

    @property
    def vocabulary_path(self) -> Path:
        return PRESET_DIR / self.data["vocabulary"]

    def threshold(self, method: str) -> float | None:
        return (self.data.get("prob_thd") or {}).get(method)

    def published(self, method: str) -> float | None:
        return (self.data.get("published_miou") or {}).get(method)

    def pairs(self, root: Path, split: str = "val") -> list[tuple[Path, Path]]:
        """(image, label) paths under ``root``, sorted by image path; a missing label is a user error.
        ``split`` matters only where the protocol names its splits by file stem (``split_stems``)."""
        images_dir, labels_dir = root / self.data["images"], root / self.data["labels"]
        for what, folder in (("image", images_dir), ("label", labels_dir)):
            if not folder.is_dir():
                raise UserError(
                    f"{self.data['name']}: no {what} folder {folder}; --root must be the dataset folder laid "
                    f"out as the reference code expects ({self.data['images']}, {self.data['labels']})"
                )
        suffix, label_suffix = self.data["image_suffix"], self.data["label_suffix"]
        images = sorted(p for p in images_dir.rglob(f"*{suffix}") if p.is_file())
        pattern = (self.data.get("split_stems") or {}).get(split)
        if pattern:
            images = [p for p in images if re.search(pattern, p.name[: -len(suffix)])]
        if not images:
            which = f" of the {split} split (file names matching {pattern})" if pattern else ""
            raise UserError(f"{self.data['name']}: no *{suffix} images{which} in {images_dir}")
        pairs = []
        for image in images:
            relative = image.relative_to(images_dir)
            label = labels_dir / relative.parent / (relative.name[: -len(suffix)] + label_suffix)
            if not label.is_file():
                raise UserError(f"{self.data['name']}: the image {image} has no label {label}")
            pairs.append((image, label))
        return pairs


def load_protocol(dataset: str) -> Protocol:
    key = str(dataset).lower()
    path = PROTOCOL_DIR / f"{key}.json"
    if key not in DATASETS or not path.is_file():
        raise UserError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)}")
    return Protocol(key, json.loads(path.read_text(encoding="utf-8")))
