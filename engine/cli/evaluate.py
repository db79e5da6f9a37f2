"""``python -m engine evaluate PRED.tif --reference REF --report REPORT.json``: assess a class raster.

The option names are the keyword names of ``engine.assess.evaluate_map`` and of the worker's
``evaluate`` request (``reference_field``, ``bbox_crs``, ...).
"""

from __future__ import annotations

import argparse
import sys

from engine.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prediction", metavar="PRED.tif", help="class raster written by `segment`")
    parser.add_argument(
        "--reference",
        required=True,
        metavar="REF",
        help="label raster (any grid or CRS: warped onto the map's grid, nearest) or polygons (.gpkg, .shp, "
        ".geojson, ...: rasterised onto the map's grid; pixels outside every polygon are not assessed)",
    )
    parser.add_argument(
        "--reference-field", metavar="FIELD", help="polygons: the attribute holding the class"
    )
    parser.add_argument(
        "--mapping",
        metavar="MAP.json",
        help='map class -> reference codes or names, e.g. {"building": [2, 3], "road": 5} '
        "(default: matching names and synonyms, else equal values)",
    )
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="CODE[,CODE...]",
        help="reference codes not assessed (e.g. 255); repeatable",
    )
    parser.add_argument("--bbox", metavar="MINX,MINY,MAXX,MAXY", help="assess only this extent")
    parser.add_argument("--bbox-crs", metavar="CRS", help="CRS of --bbox (default: the map's)")
    parser.add_argument("--report", required=True, metavar="REPORT.json", help="the report (every figure)")
    parser.add_argument("--csv", metavar="CM.csv", help="also write the confusion matrix as CSV")
    parser.add_argument("--plot", metavar="CM.png", help="also draw the confusion matrix and per-class IoU")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_codes(values: list[str]) -> list[int]:
    codes = []
    for value in values:
        for part in str(value).split(","):
            if part.strip():
                try:
                    codes.append(int(part))
                except ValueError:
                    raise UserError(f"--ignore {value!r}: give integer reference codes, e.g. 255") from None
    return codes


def _figure(value) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def run(args: argparse.Namespace) -> int:
    from engine.assess.evaluate import evaluate_map
    from engine.cli.console import run_on_console

    def summary(report: dict) -> None:
        print(
            f"overall accuracy {_figure(report['overall_accuracy'])}  kappa {_figure(report['kappa'])}  "
            f"mIoU {_figure(report['miou'])}  mF1 {_figure(report['mf1'])}  "
            f"({report['assessed_pixels']} pixels assessed)"
        )
        if report["unmatched_reference_codes"]:
            names = report["unmatched_reference_names"]
            listed = ", ".join(
                f"{names.get(code, code)} ({pixels} px)"
                for code, pixels in report["unmatched_reference_codes"].items()
            )
            print(
                f"reference classes matching no map class (not assessed; see --mapping): {listed}",
                file=sys.stderr,
            )
        print(args.report)

    return run_on_console(
        lambda progress, cancel: evaluate_map(
            args.prediction,
            args.reference,
            reference_field=args.reference_field,
            mapping=args.mapping,
            ignore=parse_codes(args.ignore),
            bbox=args.bbox,
            bbox_crs=args.bbox_crs,
            report=args.report,
            csv=args.csv,
            plot=args.plot,
            progress=progress,
            cancel=cancel,
        ),
        summary,
        quiet=args.quiet,
    )
