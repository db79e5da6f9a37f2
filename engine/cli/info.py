"""``python -m engine info``: the diagnostics report, as text or JSON."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    from engine.cli.diagnostics import engine_report

    report = engine_report()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for key, value in report.items():
        if key == "weights":
            present = [w["name"] for w in value if w["present"]]
            print(f"{'weights present':<22} {', '.join(present) or 'none'}")
        else:
            print(f"{key:<22} {value}")
    return 0
