"""Runs a case in its own interpreter, so that its peak resident memory (RSS) is its own.

The child (``python -m engine.bench.runner``) reports ``getrusage(RUSAGE_SELF).ru_maxrss``: the
high-water mark of the whole run, models included. Comparing two children that load the same models
isolates what the raster itself costs (the memory-scaling pair).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from engine.bench.cases import BenchCase

#: A case that has not finished after this long is recorded as failed (a full-size ReSeg-CLIP run on a
#: 2-core CPU takes minutes per repeat).
DEFAULT_TIMEOUT_S = 3 * 3600


def run_isolated(
    case: BenchCase,
    input_path: Path,
    *,
    keep_labels: Path | None = None,
    warmup_input: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    workdir: Path | None = None,
) -> dict:
    """Raw measurements of ``case`` from a fresh interpreter (``{"error": ...}`` if it failed)."""
    with tempfile.TemporaryDirectory(prefix="rs-ovseg-bench-", dir=workdir) as folder:
        folder_path = Path(folder)
        case_file = folder_path / "case.json"
        result_file = folder_path / "result.json"
        case_file.write_text(json.dumps(case.to_json()), encoding="utf-8")
        command = [
            sys.executable,
            "-m",
            "engine.bench.runner",
            str(case_file),
            str(result_file),
            str(input_path),
            str(keep_labels) if keep_labels else "",
            str(warmup_input) if warmup_input else "",
        ]
        env = dict(os.environ)
        project = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [project, env.get("PYTHONPATH", "")]))
        try:
            completed = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if not result_file.exists():
            tail = (completed.stderr or "").strip().splitlines()[-5:]
            return {"error": f"exit code {completed.returncode}: " + " | ".join(tail)}
        return json.loads(result_file.read_text(encoding="utf-8"))
