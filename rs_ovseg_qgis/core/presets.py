"""Vocabulary presets shipped in ``resources/presets/*.json``: benchmark class sets and task presets."""

from __future__ import annotations

from pathlib import Path

from .paths import PRESETS_DIR
from .vocabulary import Vocabulary


def preset_files(directory: Path = PRESETS_DIR) -> dict[str, Path]:
    """Preset label → file; benchmark class sets first, then the task presets (``task_*.json``)."""
    files = sorted(directory.glob("*.json"), key=lambda p: (p.stem.startswith("task_"), p.stem))
    return {Vocabulary.load(p).name: p for p in files}


def load_preset(label: str, directory: Path = PRESETS_DIR) -> Vocabulary:
    files = preset_files(directory)
    if label not in files:
        raise KeyError(f"no preset named {label!r}; known: {', '.join(files)}")
    return Vocabulary.load(files[label])
