"""``python -m engine models``: list, download, import and check model weights.

list                 every known weight: name, kind, size, licence, whether it is present
download NAME…       fetch into the cache (resumes, verifies); found files are only verified
import NAME FILE     verify a file obtained elsewhere and place it in the cache
check FILE           identify a checkpoint's format and architecture (reads it safely, runs nothing)
"""

from __future__ import annotations

import argparse
import json
import sys

from engine.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--offline-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="folder holding weight files copied by hand (repeatable; also RS_OVSEG_OFFLINE_DIR)",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list known weights and whether they are present")
    listing.add_argument("--kind", choices=["clip", "sam", "upsampler", "sam3"], help="only this kind")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    fetch = actions.add_parser("download", help="download weights into the cache")
    fetch.add_argument("names", nargs="+", metavar="NAME")
    fetch.add_argument("--force", action="store_true", help="download even if a verified copy exists")
    fetch.add_argument(
        "--token",
        metavar="TOKEN",
        help="hub access token for gated weights such as sam3 (default: the HF_TOKEN environment variable)",
    )
    imported = actions.add_parser("import", help="verify a file obtained elsewhere and place it in the cache")
    imported.add_argument("name", metavar="NAME")
    imported.add_argument("file", metavar="FILE")
    check = actions.add_parser("check", help="identify a checkpoint's format and architecture safely")
    check.add_argument("file", metavar="FILE")
    check.add_argument("--json", action="store_true", help="machine-readable output")


def _human_size(size: int | None) -> str:
    if not size:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return "?"


def _list(args) -> int:
    from engine.models import cache, registry

    rows = []
    for entry in registry.all_entries(args.kind):
        place = cache.is_cached(entry, args.offline_dir)
        rows.append(
            {
                "name": entry.name,
                "kind": entry.kind,
                "architecture": entry.architecture,
                "size": entry.size,
                "licence": entry.licence,
                "present": place or "no",
                "description": entry.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"cache folder: {cache.cache_dir()}")
    header = ("NAME", "KIND", "ARCH", "SIZE", "PRESENT", "LICENCE")
    table = [header] + [
        (r["name"], r["kind"], r["architecture"], _human_size(r["size"]), r["present"], r["licence"])
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return 0


def _terminal_progress():
    """A progress callback drawing one tqdm bar per file on stderr."""
    from tqdm.auto import tqdm

    bars: dict = {}

    def report(event: dict) -> None:
        if event.get("stage") not in ("download", "verify") or "bytes_done" not in event:
            return
        key = (event["stage"], event.get("url") or event.get("file"))
        bar = bars.get(key)
        if bar is None:
            label = "verify" if event["stage"] == "verify" else event.get("name", "download")
            bar = bars[key] = tqdm(
                total=event.get("bytes_total") or None, unit="B", unit_scale=True, desc=label
            )
        bar.update(event["bytes_done"] - bar.n)
        if event.get("bytes_total") and event["bytes_done"] >= event["bytes_total"]:
            bar.close()

    return report


def _download(args) -> int:
    from engine.models import registry
    from engine.models.download import download

    progress = _terminal_progress()
    for name in args.names:
        entry = registry.get_entry(name)
        # The licence is stated before any byte is fetched (gated weights: the user accepted it on the hub).
        print(f"{name}: licence {entry.licence}", file=sys.stderr)
        located = download(
            entry, progress=progress, offline_dir=args.offline_dir, force=args.force, token=args.token
        )
        print(f"{name}: {located.path} (sha256 {located.sha256}, {located.place})")
    return 0


def _import(args) -> int:
    from engine.models import registry
    from engine.models.download import import_file

    located = import_file(registry.get_entry(args.name), args.file)
    print(f"{args.name}: imported to {located.path} (sha256 {located.sha256})")
    return 0


def _check(args) -> int:
    from engine.models.checkpoints import describe, read_checkpoint

    summary = describe(read_checkpoint(args.file))
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    for key in ("file", "container", "format", "kind", "architecture", "tensors", "parameters", "dtypes"):
        print(f"{key:>13}: {summary[key]}")
    for key, value in summary["details"].items():
        print(f"{key:>13}: {value}")
    for note in summary["notes"]:
        print(f"{'note':>13}: {note}")
    return 0


def run(args) -> int:
    actions = {"list": _list, "download": _download, "import": _import, "check": _check}
    try:
        return actions[args.action](args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
