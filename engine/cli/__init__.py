"""``python -m engine COMMAND``: thin shells over the engine's modules.

Each command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their command runs, so ``--help`` stays instant. ``diagnostics.py``
builds the report of ``info`` and the worker's ``info`` request.
Top layer: may import every engine package; only ``engine.__main__`` and bench/ import it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from engine import __version__
from engine.errors import UserError
from engine.runtime.allocator import keep_freed_memory
from engine.runtime.float_env import flush_denormals

# command name -> (module, one-line help)
COMMANDS = {
    "segment": ("engine.cli.segment", "segment a raster by a free-text vocabulary"),
    "models": ("engine.cli.models", "list, download, import and check model weights"),
    "compose": ("engine.cli.compose", "average several CLIP checkpoints into one (ReSeg-CLIP)"),
    "worker": ("engine.cli.worker", "serve JSON-lines requests on stdin/stdout (used by the plugin)"),
    "bench": ("engine.cli.bench", "run the benchmark suite"),
    "evaluate": ("engine.cli.evaluate", "assess a class raster against reference labels or polygons"),
    "reproduce": ("engine.cli.reproduce", "run a published benchmark protocol (mIoU over a dataset)"),
    "train": ("engine.cli.train", "train AerOSeg on labelled imagery (a label raster or polygons)"),
    "info": ("engine.cli.info", "report interpreter, versions, device and weights present"),
    "cluster": ("engine.cli.cluster", "start Dask workers on SLURM for --executor dask (dask-jobqueue)"),
}

#: Commands that run models (the others need not import torch).
COMPUTING_COMMANDS = ("segment", "compose", "worker", "bench", "reproduce", "train")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rs-ovseg engine {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        if name == only:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Only the chosen command's module is imported (and only its arguments are built).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    chosen = chosen if chosen in COMMANDS else None
    args = build_parser(chosen).parse_args(argv)
    keep_freed_memory()  # before any model exists: large tensors then reuse heap pages (runtime.allocator)
    if args.command in COMPUTING_COMMANDS:
        flush_denormals()  # before PyTorch starts its threads, which inherit it (engine.runtime.float_env)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except UserError as error:  # a command that did not report it itself: still a message, not a trace
        print(f"error: {error}", file=sys.stderr)
        return 2
