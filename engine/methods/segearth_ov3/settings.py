"""SegEarth-OV3's settings and its per-dataset presets (from the reference's ``configs/cfg_*.py``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from engine.errors import UserError


@dataclass(frozen=True)
class SegEarthOV3Settings:
    """Defaults: the reference's OpenEarthMap configuration."""

    #: sliding-window crop edge and stride in working pixels (the reference works at native resolution).
    crop_size: int = 512
    crop_stride: int = 512
    #: objects whose score (object × presence probability) is at most this are dropped.
    confidence_threshold: float = 0.1
    #: pixels whose best class score is below this are unclassified (the pipeline's threshold).
    probability_threshold: float = 0.1
    #: the reference's switches: instance masks from the object-query decoder, the semantic head, and
    #: the multiplication by the presence score.
    use_instances: bool = True
    use_semantic: bool = True
    use_presence: bool = True
    #: (crop, query) pairs per grounding call; None: the method picks by device (memory bound).
    pairs_per_call: int | None = None
    #: the reference's structure instead: per crop, one query at a time (its text encoded, its prompt
    #: built and grounded alone). Same maps; kept to measure the batched path against it.
    per_query_loop: bool = False
    #: the preset these settings came from (for the sidecar), or "custom".
    preset: str = "openearthmap"

    def __post_init__(self) -> None:
        if self.crop_size <= 0 or not 0 < self.crop_stride <= self.crop_size:
            raise UserError(
                f"crop stride must be between 1 and the crop size ({self.crop_size}), got {self.crop_stride}"
            )
        for name in ("confidence_threshold", "probability_threshold"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise UserError(
                    f"{name.replace('_', ' ')} must be between 0 and 1, got {getattr(self, name)}"
                )
        if self.pairs_per_call is not None and self.pairs_per_call < 1:
            raise UserError(f"pairs per call must be at least 1, got {self.pairs_per_call}")
        if not (self.use_instances or self.use_semantic):
            raise UserError("SegEarth-OV3 needs instance masks, the semantic head, or both")

    def to_json(self) -> dict:
        return asdict(self)


#: Per-dataset values of the reference configs (``prob_thd``, ``confidence_threshold``; OpenEarthMap's
#: ``slide_crop``/``slide_stride`` 512). The other configs feed whole images (no sliding window): the
#: crop here is that dataset's usual image edge in the mmseg layout (LoveDA 1024, iSAID 896 patches,
#: Potsdam and Vaihingen 512 tiles); UAVid, UDD5 and VDD frames are several thousand pixels, which the
#: reference squeezes into SAM 3's 1008² input, so 1008-pixel windows are used for them.
PRESETS: dict[str, dict] = {
    "openearthmap": dict(crop_size=512, crop_stride=512, probability_threshold=0.1, confidence_threshold=0.1),
    "loveda": dict(crop_size=1024, crop_stride=1024, probability_threshold=0.5, confidence_threshold=0.5),
    "isaid": dict(crop_size=896, crop_stride=896, probability_threshold=0.5, confidence_threshold=0.4),
    "potsdam": dict(crop_size=512, crop_stride=512, probability_threshold=0.1, confidence_threshold=0.2),
    "vaihingen": dict(crop_size=512, crop_stride=512, probability_threshold=0.1, confidence_threshold=0.4),
    "uavid": dict(crop_size=1008, crop_stride=1008, probability_threshold=0.3, confidence_threshold=0.3),
    "udd5": dict(crop_size=1008, crop_stride=1008, probability_threshold=0.1, confidence_threshold=0.5),
    "vdd": dict(crop_size=1008, crop_stride=1008, probability_threshold=0.3, confidence_threshold=0.5),
}
DEFAULT_PRESET = "openearthmap"


def preset_settings(name: str | None = None, **overrides) -> SegEarthOV3Settings:
    """Settings of preset ``name`` (default OpenEarthMap) with ``overrides`` (None values ignored)."""
    key = (name or DEFAULT_PRESET).strip().lower()
    if key not in PRESETS:
        raise UserError(f"unknown SegEarth-OV3 preset {name!r}: use one of {', '.join(PRESETS)}")
    settings = replace(SegEarthOV3Settings(), preset=key, **PRESETS[key])
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        settings = replace(settings, **given)
    return settings
