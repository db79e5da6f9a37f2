"""Training crops that see labelled pixels, their augmentation, and the held-out validation blocks.

Randomness comes from one ``torch.Generator`` whose state is saved in checkpoints, so a resumed run
draws the same crops as an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.methods.aeroseg.training.labels import IGNORE, UNLABELLED, LabelledImage


def validation_masks(images: list[LabelledImage], fraction: float, block: int, seed: int) -> list[np.ndarray]:
    """Per image a (H, W) bool mask of held-out pixels: ``fraction`` of the labelled ``block``² squares,
    chosen with ``seed``. Every class keeps at least one training block (a block is not held out when it
    would take a class's last training pixels)."""
    rng = np.random.default_rng(seed)
    masks = [np.zeros(image.labels.shape, dtype=bool) for image in images]
    if fraction <= 0:
        return masks
    blocks = []
    for index, image in enumerate(images):
        height, width = image.labels.shape
        for top in range(0, height, block):
            for left in range(0, width, block):
                cell = image.labels[top : top + block, left : left + block]
                present = np.unique(cell[(cell != UNLABELLED) & (cell != IGNORE)])
                if present.size:
                    blocks.append((index, top, left, set(present.tolist())))
    wanted = round(fraction * len(blocks))
    remaining: dict[int, int] = {}
    for _, _, _, present in blocks:
        for value in present:
            remaining[value] = remaining.get(value, 0) + 1
    for position in rng.permutation(len(blocks)):
        if wanted == 0:
            break
        index, top, left, present = blocks[position]
        if any(remaining[value] <= 1 for value in present):
            continue
        for value in present:
            remaining[value] -= 1
        masks[index][top : top + block, left : left + block] = True
        wanted -= 1
    return masks


class CropMaker:
    """Crop placement and augmentation from one generator (its state is what a checkpoint saves)."""

    def __init__(self, crop: int, settings, seed: int):
        self.crop, self.settings = crop, settings
        self.generator = torch.Generator().manual_seed(seed)

    def integer(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def uniform(self, low: float, high: float) -> float:
        return float(low + (high - low) * torch.rand((), generator=self.generator))

    def crop_around(
        self, rgb: np.ndarray, labels: np.ndarray, pixel: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """An augmented crop of (3, H, W) ``rgb`` and (H, W) ``labels`` that holds the flat ``pixel``;
        the crop's position around it is random, kept inside the image when the image is large enough
        (else padded with black and IGNORE)."""
        height, width = labels.shape
        row, col = divmod(pixel, width)
        crop = self.crop
        top = row - self.integer(crop)
        left = col - self.integer(crop)
        top = min(max(top, 0), height - crop) if height >= crop else top
        left = min(max(left, 0), width - crop) if width >= crop else left
        out_rgb = torch.zeros(3, crop, crop)
        out_lab = torch.full((crop, crop), IGNORE, dtype=torch.uint8)
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + crop, height), min(left + crop, width)
        out_rgb[:, r0 - top : r1 - top, c0 - left : c1 - left] = torch.from_numpy(
            rgb[:, r0:r1, c0:c1].astype(np.float32)
        )
        out_lab[r0 - top : r1 - top, c0 - left : c1 - left] = torch.from_numpy(labels[r0:r1, c0:c1])
        return self.augment(out_rgb, out_lab)

    def augment(self, rgb: torch.Tensor, lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Random flips (both axes) and colour jitter (brightness, contrast, saturation)."""
        if self.settings.flips:
            for axis in (-1, -2):
                if self.integer(2):
                    rgb, lab = rgb.flip(axis), lab.flip(axis)
        jitter = self.settings.colour_jitter
        if jitter > 0:
            brightness = self.uniform(1 - jitter, 1 + jitter)
            contrast = self.uniform(1 - jitter, 1 + jitter)
            saturation = self.uniform(1 - jitter, 1 + jitter)
            rgb = rgb * brightness
            rgb = (rgb - rgb.mean()) * contrast + rgb.mean()
            grey = rgb.mean(dim=0, keepdim=True)
            rgb = (rgb - grey) * saturation + grey
            rgb = rgb.clamp(0, 255)
        return rgb, lab


class CropSampler:
    """Random crops around labelled training pixels, as (B, 3, c, c) float 0..255 and (B, c, c) labels.

    Each crop holds a labelled pixel drawn uniformly from all training pixels; ``held_out`` pixels are
    IGNORE here.
    """

    def __init__(
        self, images: list[LabelledImage], held_out: list[np.ndarray], crop: int, settings, seed: int
    ):
        self.images = images
        self.maker = CropMaker(crop, settings, seed)
        self.labels = []
        for image, mask in zip(images, held_out):
            labels = image.labels.copy()
            labels[mask] = IGNORE
            self.labels.append(labels)
        self.pixels = [np.flatnonzero((lab != UNLABELLED) & (lab != IGNORE)) for lab in self.labels]
        self.totals = np.array([len(p) for p in self.pixels], dtype=np.int64)

    @property
    def generator(self) -> torch.Generator:
        return self.maker.generator

    def one(self) -> tuple[torch.Tensor, torch.Tensor]:
        draw = self.maker.integer(int(self.totals.sum()))
        index = int(np.searchsorted(np.cumsum(self.totals), draw, side="right"))
        before = int(self.totals[:index].sum())
        pixel = int(self.pixels[index][draw - before])
        return self.maker.crop_around(self.images[index].rgb, self.labels[index], pixel)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.one() for _ in range(size)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
