"""Build open_clip models by architecture name, with random weights when asked.

Architectures are data: open_clip's own configs plus the tiny test configs in ``configs/`` (same
code paths as ViT-B/16 and ViT-L/14, a few layers and a small width, so tests run in seconds).
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
TINY_VIT_16 = "RSOVSeg-Tiny-ViT-16"
TINY_VIT_14 = "RSOVSeg-Tiny-ViT-14"
_registered = False


def _register_configs() -> None:
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def known_architectures() -> list[str]:
    _register_configs()
    import open_clip

    return open_clip.list_models()


def create_clip(architecture: str, *, seed: int = 0, quick_gelu: bool = True):
    """An open_clip model of ``architecture`` with seeded random weights, in eval mode on the CPU.

    ``quick_gelu`` matches OpenAI's CLIP weights (the reference backbones all derive from them).
    """
    _register_configs()
    import open_clip
    import torch

    if architecture not in open_clip.list_models():
        raise ValueError(
            f"unknown CLIP architecture {architecture!r}; known: {', '.join(open_clip.list_models())}"
        )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = open_clip.create_model(architecture, pretrained=None, force_quick_gelu=quick_gelu)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def tokenizer_for(architecture: str):
    _register_configs()
    import open_clip

    return open_clip.get_tokenizer(architecture)
