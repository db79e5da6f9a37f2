"""Counters of SAM and CLIP work, reported in the run's sidecar."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class SegmentationCost:
    #: SAM image-encoder forward passes (the expensive part of SAM).
    sam_encoder_passes: int = 0
    #: Wall-clock seconds spent producing SAM masks (encoder, decoder, post-processing).
    sam_seconds: float = 0.0
    #: SAM windows whose masks came from the cache / had to be computed.
    sam_windows_cached: int = 0
    sam_windows_computed: int = 0
    #: Wall-clock seconds in the CLIP vision tower and the cosine scoring.
    clip_seconds: float = 0.0

    def as_dict(self) -> dict:
        data = asdict(self)
        data["sam_seconds"] = round(self.sam_seconds, 3)
        data["clip_seconds"] = round(self.clip_seconds, 3)
        return data
