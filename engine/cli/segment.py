"""``python -m engine segment INPUT --class ... --out OUT.tif``: segment a raster by a free-text vocabulary.

The option names here are the contract shared with the worker (``engine.cli.worker``), whose request
``args`` use the same names (``bbox_crs``, ``random_weights``, ...): both become one
``engine.options.SegmentOptions``, and ``run_segment`` serves both. Method-specific flags come from the
methods' specs (engine.methods.catalogue).
"""

from __future__ import annotations

import argparse
import logging

from engine.methods.catalogue import DEFAULT_METHOD, SPECS
from engine.methods.reseg.spec import parse_parameter_sets  # noqa: F401 (kept importable from here)
from engine.methods.spec import FIDELITIES
from engine.options.scale_arguments import add_scale_arguments
from engine.pipeline.job import run_segment

log = logging.getLogger("engine.segment")


def _gsd_defaults() -> str:
    return "; ".join(f"{s.name}: {s.gsd_rule}" for s in SPECS.values())


def _threshold_defaults() -> str:
    return "; ".join(f"{s.name}: {s.threshold.default:g}, {s.threshold.kind}" for s in SPECS.values())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="raster to segment (any format GDAL reads)")
    parser.add_argument(
        "--class",
        dest="classes",
        action="append",
        default=[],
        metavar="NAME[,SYNONYM...]",
        help='one class per option; commas separate synonyms, e.g. --class "building,roof,house"',
    )
    parser.add_argument(
        "--vocabulary", metavar="FILE", help="classes from a .json file or a SegEarth-OV .txt file"
    )
    parser.add_argument(
        "--method", default=DEFAULT_METHOD, help=f"{' or '.join(SPECS)} (default {DEFAULT_METHOD})"
    )
    parser.add_argument(
        "--out", required=True, metavar="OUT.tif", help="class raster to write (uint8 GeoTIFF)"
    )
    parser.add_argument(
        "--confidence",
        metavar="OUT_CONF.tif",
        help="also write what the threshold compares (float32): the winning probability, or for "
        "margin-thresholded methods the winning class's cosine margin over the runner-up",
    )
    parser.add_argument(
        "--bands", metavar="R,G,B", help="bands used as red, green, blue (default: R/G/B or 1,2,3)"
    )
    parser.add_argument("--bbox", metavar="MINX,MINY,MAXX,MAXY", help="segment only this extent")
    parser.add_argument(
        "--bbox-crs", metavar="CRS", help="CRS of --bbox, e.g. EPSG:4326 (default: the raster's)"
    )
    parser.add_argument(
        "--gsd",
        type=float,
        metavar="METRES",
        help="working resolution fed to the model (default: the method's; " + _gsd_defaults() + ")",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument(
        "--threshold",
        type=float,
        help="pixels scoring below it stay unclassified (default: the vocabulary's value for the method, "
        "else the method's: " + _threshold_defaults() + "; 0 = none)",
    )
    parser.add_argument(
        "--fidelity",
        choices=FIDELITIES,
        default="fast",
        help="reference: the reference code's own structure where the fast path deviates for speed "
        "(ReSeg-CLIP: SAM per 224-px crop, black padding at the raster edge; SegEarth-OV: the extent "
        "fitted inside 448 px); recorded in the sidecar (default fast)",
    )
    parser.add_argument("--templates", metavar="imagenet|remote-sensing|FILE", help="prompt templates")
    parser.add_argument(
        "--attention", metavar="MODE", help="last-block attention: segearth, clearclip, sclip, ..."
    )
    parser.add_argument("--clip", metavar="NAME|FILE", help="CLIP weights: registry name or checkpoint file")
    parser.add_argument("--upsampler", metavar="NAME|FILE|none", help="feature upsampler; none = bilinear")
    parser.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="model precision (default auto: bfloat16 where the CPU has bf16 matrix units or on a GPU, "
        "else float32; the upsampler stays float32)",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="seeded random weights (tests/benchmarks; output meaningless)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-weights")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--warp",
        action="store_true",
        help="rasters placed by GCPs or RPCs: write a north-up grid (GCPs' CRS; RPCs: the scene's UTM "
        "zone) instead of the input's pixel grid with its GCPs/RPCs",
    )
    parser.add_argument("--batch-size", type=int, help="crops per model call (default: fits device memory)")
    parser.add_argument(
        "--tile-size", type=int, metavar="PIXELS", help="working pixels per read tile (memory)"
    )
    add_scale_arguments(parser)
    for spec in SPECS.values():
        if spec.extra:
            group = parser.add_argument_group(f"{spec.label} (--method {spec.name})")
            for option in spec.extra:
                group.add_argument(option.flag, dest=option.name, metavar=option.metavar, help=option.help)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from engine.cli.console import run_on_console

    def report(result) -> None:
        print(result.out)
        if result.confidence:
            print(result.confidence)
        print(result.sidecar)

    # The engine's warnings (random weights, no georeferencing, ...) always reach the user's terminal;
    # SIGTERM too unwinds the run, so its temporary files are removed.
    return run_on_console(
        lambda progress, cancel: run_segment(vars(args), progress=progress, cancel=cancel),
        report,
        quiet=args.quiet,
    )
