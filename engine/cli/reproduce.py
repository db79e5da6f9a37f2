"""``python -m engine reproduce --dataset D --root DIR --method M --report R.json``: a published protocol.

Reads the dataset in the reference code's layout, runs the method image by image through the
pixel-space pipeline and reports mmseg's mIoU beside the published number (engine.assess.reproduce).
Interrupted runs resume from the per-image results kept in ``R.images/``.
"""

from __future__ import annotations

import argparse
import logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from engine.assess.protocols import DATASETS

    parser.add_argument("--dataset", required=True, choices=DATASETS, help="benchmark dataset")
    parser.add_argument(
        "--root", required=True, metavar="DIR", help="the dataset's folder, laid out as the reference expects"
    )
    parser.add_argument(
        "--method", default="segearth-ov", help="segearth-ov (default), reseg-clip, segearth-ov3"
    )
    parser.add_argument("--report", required=True, metavar="R.json", help="the report to write")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N images (a quick look)")
    parser.add_argument(
        "--threshold", type=float, help="probability threshold (default: the reference config's prob_thd)"
    )
    parser.add_argument(
        "--resize",
        type=int,
        metavar="PX",
        help="long side the image is resized to (default: the reference's, 448 for segearth-ov; other "
        "methods their own working resolution)",
    )
    parser.add_argument(
        "--keep-predictions", action="store_true", help="also keep each image's class indices as a PNG"
    )
    model = parser.add_argument_group("method options (as for segment)")
    model.add_argument("--clip", metavar="NAME|FILE", help="CLIP weights: registry name or checkpoint file")
    model.add_argument("--upsampler", metavar="NAME|FILE|none", help="feature upsampler; none = bilinear")
    model.add_argument("--attention", metavar="MODE", help="last-block attention mode")
    model.add_argument("--templates", metavar="imagenet|remote-sensing|FILE", help="prompt templates")
    model.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"))
    model.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))
    model.add_argument("--random-weights", action="store_true", default=None, help="seeded random weights")
    model.add_argument("--seed", type=int, help="seed for --random-weights")
    model.add_argument("--batch-size", type=int, help="crops per model call")
    model.add_argument("--sam", metavar="NAME|FILE", help="reseg-clip: SAM weights")
    model.add_argument("--schedule", metavar="TEXT", help="reseg-clip: attention per vision block")
    model.add_argument("--sam-window", type=int, metavar="PX", help="reseg-clip: SAM window side")
    model.add_argument("--mask-cache", metavar="DIR", help="reseg-clip: on-disk SAM mask cache")
    model.add_argument("--sam-parameter-sets", metavar="JSON|FILE", help="reseg-clip: SAM generator settings")
    model.add_argument("--sam3", metavar="NAME|FILE", help="segearth-ov3: SAM 3 weights")
    model.add_argument("--sam3-config", metavar="full|tiny", help="segearth-ov3: SAM 3 architecture")
    model.add_argument(
        "--sam3-preset", metavar="NAME", help="segearth-ov3: reference settings (default: the dataset's)"
    )
    model.add_argument("--instance-confidence", type=float, help="segearth-ov3: instance score floor")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from engine.assess.reproduce import METHOD_OPTIONS, ReproduceRequest, reproduce
    from engine.cli.console import run_on_console

    request = ReproduceRequest(
        dataset=args.dataset,
        root=args.root,
        method=args.method,
        report=args.report,
        limit=args.limit,
        threshold=args.threshold,
        resize_long_side=args.resize,
        keep_predictions=args.keep_predictions,
        options={name: getattr(args, name) for name in METHOD_OPTIONS if getattr(args, name) is not None},
    )

    def summary(report: dict) -> None:
        published = report["published_miou_percent"]
        print(
            f"{report['dataset_name']} {report['method']}: mIoU {report['miou_percent']} % over "
            f"{report['images']['evaluated']} images"
            + ("" if published is None else f" (published {published} %)")
        )
        print(args.report)

    return run_on_console(
        lambda progress, cancel: reproduce(request, progress=progress, cancel=cancel),
        summary,
        quiet=args.quiet,
        stopped="interrupted: per-image results are kept; run the same command again to resume",
        log_level=logging.WARNING,
    )
