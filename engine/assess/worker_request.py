"""The worker's ``evaluate`` request: JSON ``args`` checked and passed to ``evaluate_map``."""

from __future__ import annotations

from collections.abc import Mapping

from engine.errors import UserError

#: Request argument names: evaluate_map's parameters.
ARGUMENTS = (
    "prediction",
    "reference",
    "reference_field",
    "mapping",
    "ignore",
    "bbox",
    "bbox_crs",
    "report",
    "csv",
    "plot",
)


def run_evaluate_request(args: Mapping, *, progress=None, cancel=None) -> dict:
    """The report's keys, plus ``report`` (the same report) and ``files`` (paths written, None if not)."""
    from .evaluate import evaluate_map

    unknown = sorted(set(args) - set(ARGUMENTS))
    if unknown:
        raise UserError(f"unknown evaluate argument(s): {', '.join(unknown)}; known: {', '.join(ARGUMENTS)}")
    for required in ("prediction", "reference"):
        if not args.get(required):
            raise UserError(f'evaluate needs "{required}"')
    ignore = args.get("ignore")
    if isinstance(ignore, (int, str)):
        ignore = [ignore]
    try:
        ignore = [int(v) for v in ignore or []]
    except (TypeError, ValueError):
        raise UserError(f'"ignore" must be a list of integer codes, got {args.get("ignore")!r}') from None
    keywords = {name: args.get(name) for name in ARGUMENTS[2:]}
    keywords["ignore"] = ignore
    report = evaluate_map(
        str(args["prediction"]), str(args["reference"]), **keywords, progress=progress, cancel=cancel
    )
    files = {name: args.get(name) for name in ("report", "csv", "plot")}
    return {**report, "report": report, "files": files}
