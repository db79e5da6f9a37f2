"""Denormals flush to zero in the engine's processes, in PyTorch's worker threads too."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A tensor of denormals times 1, over enough elements that PyTorch splits the product across its 2
# threads; with flush-to-zero every thread's part comes out 0. The denormals are made from their bit
# pattern (1 = the smallest, 1.4e-45): a float conversion in a flushing thread would already give 0.
# Flushing only after PyTorch's threads exist leaves the worker thread's half nonzero.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    flushed = False
    if sys.argv[1] == "flush":
        from engine.runtime.float_env import flush_denormals
        flushed = flush_denormals()
    torch.set_num_threads(2)
    torch.ones(1_000_000).sum()  # PyTorch's threads start here (or already did), after the switch
    tiny = torch.ones(4_000_000, dtype=torch.int32).view(torch.float32)
    product = tiny * 1.0
    print(json.dumps({"flushed": flushed, "nonzero": int((product != 0).sum()), "n": product.numel()}))
    """
)


def _run(mode: str) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_denormals_survive_by_default_and_flush_in_every_thread_after_the_switch():
    default = _run("keep")
    assert default["nonzero"] == default["n"]  # the premise: PyTorch keeps denormals on its own
    flushed = _run("flush")
    if not flushed["flushed"]:
        pytest.skip("this CPU cannot flush denormals (not x86 with SSE3)")
    assert flushed["nonzero"] == 0  # the main thread's half and the worker thread's half


def test_commands_that_run_models_switch_it_on_first(monkeypatch, tmp_path):
    import engine.cli

    calls = []
    monkeypatch.setattr(engine.cli, "flush_denormals", lambda: calls.append("flush") or True)
    missing = tmp_path / "missing.tif"
    assert engine.cli.main(
        ["segment", str(missing), "--class", "a", "--class", "b", "--out", str(tmp_path / "o.tif")]
    )
    assert calls == ["flush"]
    assert engine.cli.main(["models", "check", str(missing)]) != 0  # no models run: left alone
    assert calls == ["flush"]
