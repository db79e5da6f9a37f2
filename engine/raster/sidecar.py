"""The JSON record written beside every output (``OUT.json``): enough to audit and reproduce a run."""

from __future__ import annotations

import json
import math
from pathlib import Path


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return _jsonable(value.item())
    return str(value)


def write_sidecar(path: str | Path, record: dict) -> None:
    """Write ``record`` as indented UTF-8 JSON (non-JSON values become strings)."""
    Path(path).write_text(
        json.dumps(_jsonable(record), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def read_sidecar(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
