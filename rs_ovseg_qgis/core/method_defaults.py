"""Each method's defaults as the panel and Processing show them (no engine import: the plugin never loads
torch). The engine's method specs (engine/methods/*spec.py) are the source; tests/plugin/
test_method_defaults.py checks that these agree with them, so a method added there is added here too.
"""

from __future__ import annotations

from dataclasses import dataclass

# (value, label) of the fidelity choice; the first is the default.
FIDELITIES: list[tuple[str, str]] = [
    ("fast", "Fast (default)"),
    ("reference", "Reference structure (slower)"),
]


@dataclass(frozen=True)
class MethodDefaults:
    """What a method does when the user sets nothing: working resolution, threshold and its meaning."""

    name: str
    gsd_factor: float  # default working resolution = the layer's pixel size × this
    gsd_rule: str  # the same in words, for tooltips
    threshold_kind: str  # "probability" or "margin"
    threshold: float  # the default when neither the run nor the vocabulary sets one; 0 = none
    threshold_meaning: str  # one sentence: what a threshold (or a class's Min) compares

    def threshold_text(self, vocabulary_value: float | None = None) -> str:
        """The panel's line under the threshold: the default that applies and what it means."""
        value = self.threshold if vocabulary_value is None else vocabulary_value
        source = "the vocabulary's" if vocabulary_value is not None else "the method's"
        default = "none" if not value else f"{value:g}"
        return f"Default: {default} ({source}). Threshold and Min: {self.threshold_meaning}."


DEFAULTS: dict[str, MethodDefaults] = {
    "segearth-ov": MethodDefaults(
        "segearth-ov",
        1000.0 / 448.0,
        "the layer's pixel size × 1000/448, as SegEarth-OV sees OpenEarthMap",
        "probability",
        0.1,
        "minimum probability of the winning class (0 to 1)",
    ),
    "reseg-clip": MethodDefaults(
        "reseg-clip",
        1.0,
        "the layer's own pixel size, as ReSeg-CLIP's reference tiles it",
        "margin",
        0.0,
        "minimum cosine margin of the winning class over the runner-up (e.g. 0.01)",
    ),
    "segearth-ov3": MethodDefaults(
        "segearth-ov3",
        1.0,
        "the layer's own pixel size, as SegEarth-OV3's reference slides over the image",
        "score",
        0.1,
        "minimum score of the winning class (SAM 3's mask probability × presence, 0 to 1)",
    ),
    "aeroseg": MethodDefaults(
        "aeroseg",
        1.0,
        "the layer's own pixel size (segment at the resolution the model was trained at)",
        "score",
        0.0,
        "minimum probability of the winning class (the trained model's sigmoid, 0 to 1)",
    ),
}


def method_defaults(name: str) -> MethodDefaults:
    return DEFAULTS.get(name, DEFAULTS["segearth-ov"])
