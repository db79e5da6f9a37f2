"""AerOSeg architectures as data: the paper's ``vit-b16`` and a ``tiny`` one for tests.

Every constant of the model is a field here (no literal in the modules). Fields marked [?] are not
stated by the paper; resources/docs/aeroseg.md gives the reasoning behind each default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from engine.errors import UserError

#: AerOSeg's remote-sensing prompt templates (paper, §3).
REMOTE_SENSING_PROMPTS = (
    "A satellite image of a {}.",
    "A land use image of a {}.",
    "A remote sensing image of a {}.",
    "An aerial image of a {}.",
)


@dataclass(frozen=True)
class AerOSegArchitecture:
    """One AerOSeg configuration. Sizes in pixels (input) or channels."""

    name: str
    # --- backbones ------------------------------------------------------------------------------
    clip_architecture: str  # open_clip model name
    clip_weights: str | None  # registry name of the base CLIP weights (None: random only)
    sam_architecture: str  # engine.models.sam_architectures name
    sam_weights: str | None
    #: SAM blocks whose outputs guide: (decoder stage 2, decoder stage 1, spatial refinement) [P: 8/16/last]
    sam_layers: tuple[int, int, int]
    crop_size: int = 384  # model input edge; CLIP and SAM both see it [?: SAM at 384, not 1024]
    # --- correlation ------------------------------------------------------------------------------
    rotations: int = 4  # rot90 k = 0..R-1, each dense map rotated back
    prompts: tuple[str, ...] = REMOTE_SENSING_PROMPTS
    hidden: int = 128  # correlation embedding width (per class)
    correlation_kernel: int = 7  # per-class Conv2d R·P → hidden
    # --- refinement -------------------------------------------------------------------------------
    rounds: int = 2  # spatial + class refinement rounds
    window: int = 12  # Swin window (patches)
    shift: int = 6  # Swin shift of the second block
    heads: int = 4
    mlp_ratio: float = 4.0
    guidance: int = 128  # SAM guidance channels after the 3×3 projection
    text_guidance: int = 128  # text guidance channels (Linear D → this, ReLU)
    class_pad: int = 256  # class sequence padded to this many tokens with a learned token
    class_pool: int = 2  # average pooling of the class block during training (1: none)
    # --- decoder ---------------------------------------------------------------------------------
    decoder_dims: tuple[int, int] = (64, 32)
    decoder_guidance: tuple[int, int] = (32, 16)
    # --- semantic back-projection ----------------------------------------------------------------
    sbp_hidden: int = 512  # [?] width of the three-layer MLP
    sbp_max_classes: int = 32  # [?] the MLP's input is the refined features of up to this many classes
    # --- pixels ---------------------------------------------------------------------------------
    clip_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    clip_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    sam_mean: tuple[float, float, float] = (123.675 / 255, 116.28 / 255, 103.53 / 255)
    sam_std: tuple[float, float, float] = (58.395 / 255, 57.12 / 255, 57.375 / 255)
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.shift >= self.window:
            raise ValueError(f"{self.name}: Swin shift {self.shift} must be below the window {self.window}")
        if self.hidden % self.heads:
            raise ValueError(f"{self.name}: hidden {self.hidden} not divisible by {self.heads} heads")
        if self.hidden <= self.decoder_guidance[0] or self.decoder_dims[0] <= self.decoder_guidance[1]:
            raise ValueError(f"{self.name}: each decoder stage needs more channels than its guidance")
        if not 1 <= self.rotations <= 4:
            raise ValueError(f"{self.name}: rotations must be 1..4, got {self.rotations}")

    @property
    def correlation_channels(self) -> int:
        return self.rotations * len(self.prompts)

    def to_json(self) -> dict:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_json(cls, data: dict) -> AerOSegArchitecture:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserError(f"AerOSeg architecture has unknown fields {', '.join(unknown)}")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
        except (TypeError, ValueError) as error:
            raise UserError(f"not a usable AerOSeg architecture: {error}") from None


ARCHITECTURES: dict[str, AerOSegArchitecture] = {
    "vit-b16": AerOSegArchitecture(
        name="vit-b16",
        clip_architecture="ViT-B-16",
        clip_weights="openai-vit-b-16",
        sam_architecture="vit_l",
        sam_weights="sam-vit-l",
        sam_layers=(7, 15, 23),
    ),
    # Same code paths, a few narrow layers, 128-px input (8×8 patches): tests and laptop demos.
    "tiny": AerOSegArchitecture(
        name="tiny",
        clip_architecture="RSOVSeg-Tiny-ViT-16",
        clip_weights=None,
        sam_architecture="tiny",
        sam_weights=None,
        sam_layers=(0, 1, 1),
        crop_size=128,
        hidden=32,
        window=4,
        shift=2,
        heads=2,
        guidance=32,
        text_guidance=32,
        class_pad=8,
        decoder_dims=(32, 16),
        decoder_guidance=(16, 8),
        sbp_hidden=64,
        sbp_max_classes=8,
    ),
}


def architecture(name: str) -> AerOSegArchitecture:
    """The configuration called ``name``; an unknown name is a user error listing the known ones."""
    arch = ARCHITECTURES.get(str(name).strip().lower())
    if arch is None:
        raise UserError(f"unknown AerOSeg architecture {name!r}: use one of {', '.join(ARCHITECTURES)}")
    return arch
