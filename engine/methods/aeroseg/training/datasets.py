"""The benchmark training protocols (``train --dataset NAME --root DIR``): a dataset's train split read
lazily, image by image, as the published protocol lays it out (``resources/benchmarks/NAME.json``, the
same files ``reproduce`` uses for its val split; the train folders are the val folders with ``val``
replaced by ``train``, or, where a protocol names its splits by file stem as DLRSD's does, the same
folders' ``train`` stems). Label value k (after mmseg's ``reduce_zero_label`` where the protocol says so)
is the protocol vocabulary's class k; ``--unseen`` classes are left out of training (their pixels are
ignored) and kept as names, so the model can be tested on them (h-mIoU). Which classes AerOSeg held out
per dataset is not published: there are none unless ``--unseen`` names them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.errors import UserError
from engine.methods.aeroseg.training.labels import IGNORE, UNLABELLED, LabelledImage, read_rgb
from engine.raster.gdal_setup import gdal_module

#: Split folders: the protocol's (val) folder with this component swapped.
EVALUATION_SPLITS = ("val", "test")


@dataclass
class BenchmarkData:
    name: str
    classes: list[list[str]]  # trained classes (names + synonyms), protocol order minus unseen
    unseen: list[str]
    pairs: list[tuple[Path, Path]]  # (image, label) of the train split
    lookup: np.ndarray  # (256,) dataset label value → our label (1..K, IGNORE)
    validation: list[LabelledImage]  # a few images of the evaluation split, labels converted

    def fingerprint(self) -> list[dict]:
        digest = hashlib.sha256("\n".join(f"{i.name}:{i.stat().st_size}" for i, _ in self.pairs).encode())
        return [{"dataset": self.name, "train_images": len(self.pairs), "listing_sha256": digest.hexdigest()}]


def _train_folder(folder: str) -> str:
    parts = Path(folder).parts
    if not any(part in EVALUATION_SPLITS for part in parts):
        raise UserError(f"cannot tell the train folder of {folder}")
    swapped = ["train" if p in EVALUATION_SPLITS else p for p in parts]
    return str(Path(*swapped))


def _read(path: Path, what: str):
    gdal = gdal_module()
    try:
        return gdal.Open(str(path))
    except RuntimeError as error:
        raise UserError(f"cannot read the {what} {path}: {error}") from None


def read_pair(image: Path, label: Path, lookup: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3, H, W) uint8 RGB and (H, W) labels in our numbering (1..K, IGNORE); sizes must agree."""
    dataset, labels = _read(image, "image"), _read(label, "label")
    rgb = read_rgb(dataset)
    if labels.RasterCount != 1:
        raise UserError(
            f"{label} has {labels.RasterCount} bands: a label must be one band of class values (a colour"
            " rendering of the labels cannot be read as classes)"
        )
    values = labels.GetRasterBand(1).ReadAsArray()
    if values.shape != rgb.shape[1:]:
        raise UserError(f"{label} is {values.shape[1]}x{values.shape[0]} px but {image} is not")
    return rgb, lookup[np.clip(values, 0, 255).astype(np.int64)]


def benchmark_data(dataset: str, root: str, unseen: list[str], validation_images: int = 8) -> BenchmarkData:
    from engine.assess.protocols import Protocol, load_protocol
    from engine.vocabulary import load_vocabulary_file

    protocol = load_protocol(dataset)
    if not root or not Path(root).is_dir():
        raise UserError(f"--dataset {dataset} needs --root DIR, the dataset's folder (got {root!r})")
    data = protocol.data
    if data.get("split_stems"):  # one folder, the splits told apart by file name (DLRSD)
        pairs = protocol.pairs(Path(root), split="train")
    else:
        train = Protocol(
            protocol.dataset,
            {**data, "images": _train_folder(data["images"]), "labels": _train_folder(data["labels"])},
        )
        pairs = train.pairs(Path(root))
    vocabulary = load_vocabulary_file(protocol.vocabulary_path)
    every = [list(c.synonyms) or [c.name] for c in vocabulary.classes]
    names = [c.name.lower() for c in vocabulary.classes]
    wanted = {u.strip().lower() for u in unseen}
    missing = sorted(wanted - set(names))
    if missing:
        raise UserError(f"--unseen {', '.join(missing)}: not a class of {data['name']} ({', '.join(names)})")
    lookup = np.full(256, IGNORE, dtype=np.uint8)
    classes, number = [], 0
    for value, (name, synonyms) in enumerate(zip(names, every)):
        if name in wanted:
            continue
        number += 1
        classes.append(synonyms)  # the vocabulary's synonyms start with the class name
        lookup[value] = number
    if data.get("reduce_zero_label"):  # dataset value v ↦ class v − 1; 0 is ignored
        shifted = np.full(256, IGNORE, dtype=np.uint8)
        shifted[1:] = lookup[:-1]
        lookup = shifted
    lookup[int(data.get("ignore_index", IGNORE))] = IGNORE
    validation = []
    try:
        held = protocol.pairs(Path(root))[:validation_images]
    except UserError:
        held = []  # no evaluation split present: training without validation
    for image, label in held:
        rgb, labels = read_pair(image, label, lookup)
        validation.append(LabelledImage(str(image), rgb, labels, (0, 1, 0, 0, 0, -1), ""))
    return BenchmarkData(data["name"], classes, sorted(wanted), pairs, lookup, validation)


class DatasetSampler:
    """Crops from the train split, reading one image per crop: an image drawn uniformly, a labelled
    pixel of it drawn uniformly, the crop placed around it and augmented (``CropMaker``)."""

    def __init__(self, data: BenchmarkData, crop: int, settings, seed: int):
        from engine.methods.aeroseg.training.sampling import CropMaker

        self.data = data
        self.maker = CropMaker(crop, settings, seed)

    @property
    def generator(self) -> torch.Generator:
        return self.maker.generator

    def one(self) -> tuple[torch.Tensor, torch.Tensor]:
        for _ in range(len(self.data.pairs)):
            rgb, labels = read_pair(
                *self.data.pairs[self.maker.integer(len(self.data.pairs))], self.data.lookup
            )
            labelled = np.flatnonzero((labels != UNLABELLED) & (labels != IGNORE))
            if labelled.size:
                return self.maker.crop_around(rgb, labels, int(labelled[self.maker.integer(labelled.size)]))
        raise UserError(
            f"{self.data.name}: no image of the train split has a labelled pixel of a trained class"
        )

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.one() for _ in range(size)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
