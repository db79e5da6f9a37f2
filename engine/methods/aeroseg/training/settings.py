"""Every training constant as a setting (defaults: CAT-Seg's where AerOSeg states none, marked [C])."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from engine.errors import UserError

IGNORE_MODES = ("exclude", "negative")


@dataclass(frozen=True)
class TrainingSettings:
    steps: int = 1000
    batch_size: int = 4  # [P]
    crop: int | None = None  # crop edge in working pixels; None: the architecture's input size
    learning_rate: float = 2e-4  # head and back-projection [C]
    clip_lr_multiplier: float = 0.01  # CLIP's projections learn at learning_rate × this [C]
    weight_decay: float = 1e-4  # [C]
    gradient_clip: float = 0.01  # global gradient-norm clip [C]
    sbp_weight: float = 0.1  # λ of the back-projection loss [?]
    #: unlabelled pixels: "exclude" (left out of the loss; right for sparse polygons) or "negative"
    #: (CAT-Seg: a negative for every class).
    ignore: str = "exclude"
    validation_fraction: float = 0.1  # share of labelled blocks held out [?]
    validation_block: int = 64  # held-out blocks are squares of this many working pixels [?]
    validate_every: int = 500
    checkpoint_every: int = 500
    flips: bool = True  # [C]
    colour_jitter: float = 0.2  # brightness/contrast/saturation factors in 1 ± this; 0 disables [C]
    seed: int = 0
    precision: str = "auto"  # "auto": bf16 autocast on CUDA, float32 elsewhere; or "float32"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise UserError(f"--steps must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.ignore not in IGNORE_MODES:
            raise UserError(f"unlabelled pixels: use one of {', '.join(IGNORE_MODES)}, got {self.ignore!r}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise UserError(f"the validation share must be in [0, 1), got {self.validation_fraction}")
        if self.crop is not None and self.crop < 16:
            raise UserError(f"--crop must be at least 16 pixels, got {self.crop}")

    def to_json(self) -> dict:
        return asdict(self)
