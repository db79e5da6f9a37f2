"""The ``segment`` command's options for large runs: output format, resume, executor (scale.md)."""

from __future__ import annotations

import argparse


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("large runs (resources/docs/scale.md)")
    group.add_argument(
        "--format",
        dest="output_format",
        choices=("gtiff", "cog"),
        help="gtiff: tiled GeoTIFFs with internal overviews (default); cog: Cloud-Optimised GeoTIFFs",
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="write finished blocks beside the output (OUT.tif.parts/) so that a stopped run continues "
        "where it stopped when started again with the same options",
    )
    group.add_argument(
        "--executor",
        choices=("local", "dask"),
        help="local: this process (default); dask: blocks on a Dask cluster (--scheduler)",
    )
    group.add_argument(
        "--scheduler",
        metavar="tcp://HOST:8786|FILE|local:N",
        help="the Dask scheduler's address, its scheduler file, or local:N (N workers on this machine, "
        "one per GPU when there are GPUs)",
    )
    group.add_argument("--retries", type=int, help="dask: tries again per failed block (default 2)")
    group.add_argument(
        "--block-tiles", type=int, metavar="N", help="read tiles per block side (resume, dask; default 4)"
    )
