"""Tiny AerOSeg models with seeded random weights for the tests (real open_clip / segment-anything)."""

from __future__ import annotations

import warnings


def tiny_aeroseg(seed: int = 0):
    """An AerOSeg of the ``tiny`` architecture, random weights (CLIP and SAM seeded, head seeded)."""
    import torch

    from engine.methods.aeroseg.architecture import architecture
    from engine.methods.aeroseg.model import AerOSeg
    from engine.models.architectures import create_clip, tokenizer_for
    from engine.models.sam_architectures import create_sam

    arch = architecture("tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clip = create_clip(arch.clip_architecture, seed=seed)
    sam = create_sam(arch.sam_architecture, seed=seed)
    torch.manual_seed(seed)
    return AerOSeg(arch, clip, tokenizer_for(arch.clip_architecture), sam.image_encoder)
