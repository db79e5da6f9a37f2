"""SAM architectures as data, built through segment-anything's own ``_build_sam``.

``tiny`` is the same code path as ViT-B/L/H with two narrow encoder blocks, for tests.
Weights are never passed to segment-anything's builder (it would ``torch.load`` without
``weights_only``); callers load a state dict they have read safely.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamArchitecture:
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]


SAM_ARCHITECTURES = {
    "vit_h": SamArchitecture(1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": SamArchitecture(1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": SamArchitecture(768, 12, 12, (2, 5, 8, 11)),
    "tiny": SamArchitecture(32, 2, 2, (1,)),
}


def create_sam(architecture: str, *, seed: int = 0):
    """A segment-anything ``Sam`` of ``architecture`` with seeded random weights, eval mode, CPU."""
    import torch
    from segment_anything.build_sam import _build_sam

    if architecture not in SAM_ARCHITECTURES:
        raise ValueError(f"unknown SAM architecture {architecture!r}; known: {', '.join(SAM_ARCHITECTURES)}")
    spec = SAM_ARCHITECTURES[architecture]
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        sam = _build_sam(
            encoder_embed_dim=spec.encoder_embed_dim,
            encoder_depth=spec.encoder_depth,
            encoder_num_heads=spec.encoder_num_heads,
            encoder_global_attn_indexes=list(spec.encoder_global_attn_indexes),
            checkpoint=None,
        )
    finally:
        torch.random.set_rng_state(state)
    return sam.eval()
