"""The engine's ``segment`` request arguments, built from what the plugin captured."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .capture import CaptureResult
from .vocabulary import Vocabulary


@dataclass
class SegmentJob:
    """Everything one engine run needs (file paths are absolute; gsd in metres per pixel)."""

    capture: CaptureResult
    vocabulary: Vocabulary
    out: Path
    method: str = "segearth-ov"
    device: str = "auto"
    confidence: Path | None = None
    overwrite: bool = False
    warp: bool = False  # GCP/RPC rasters: a north-up grid instead of their GCPs/RPCs (engine --warp)
    fidelity: str = "fast"  # "reference": the reference code's structure (engine --fidelity)
    # Further engine options by their request names (clip, upsampler, attention, templates, seed, ...).
    options: dict = field(default_factory=dict)

    def vocabulary_args(self) -> dict:
        """The vocabulary as the engine reads it: classes (with literal prompts) and per-method thresholds
        (the engine applies the chosen method's, else the method's own default)."""
        data: dict = {"classes": [c.to_dict() for c in self.vocabulary.classes]}
        if self.vocabulary.method_thresholds:
            data["method_thresholds"] = dict(self.vocabulary.method_thresholds)
        return data

    def engine_args(self) -> dict:
        """Arguments of the worker's ``segment`` request (same names as the command line's options)."""
        args: dict = {
            "input": self.capture.path,
            "vocabulary": self.vocabulary_args(),
            "method": self.method,
            "device": self.device,
            "out": str(self.out),
            "overwrite": self.overwrite,
        }
        if self.confidence is not None:
            args["confidence"] = str(self.confidence)
        if self.warp:
            args["warp"] = True
        if self.fidelity != "fast":
            args["fidelity"] = self.fidelity
        if self.capture.bbox is not None:
            args["bbox"] = list(self.capture.bbox)
            args["bbox_crs"] = self.capture.bbox_crs
        if self.capture.gsd:
            args["gsd"] = self.capture.gsd
        if self.capture.bands:
            args["bands"] = list(self.capture.bands)
        if self.vocabulary.threshold is not None:  # set for this run: any method; else the engine picks
            args["threshold"] = self.vocabulary.threshold
        reserved = set(args) | {"classes"}
        clashes = sorted(reserved & set(self.options))
        if clashes:
            raise ValueError(f"advanced options may not set {', '.join(clashes)}: use the dedicated settings")
        args.update(self.options)
        return args
