"""`kfp-yolo dataset check PATH|URI [--json]`, `dataset convert SRC DST [--json]` and
`dataset synth DIR [--replace]`."""

from __future__ import annotations

import argparse
import json

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Runs one dataset action; a UserError propagates to the CLI (exit code 2)."""
    if args.dataset_command == "synth":
        return _synth(args)
    if args.dataset_command == "convert":
        return _convert(args)
    return _check(args)


def _check(args: argparse.Namespace) -> int:
    from kfp_yolo.components.data.prepare import PreparedDataset, check_dataset
    from kfp_yolo.components.reports.dataset import render_report

    result = check_dataset(args.uri)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    described = PreparedDataset(data_yaml=None, names=result["names"], stats=result["stats"],
                                content_hash=result["content_hash"], warnings=result["warnings"],
                                conversion=result["conversion"])
    print(render_report(described).rstrip())
    print(f"\n{args.uri}: ok, {result['stats']['images']} images, "
          f"{len(result['names'])} classes.")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from kfp_yolo.components.data.formats import convert_uri

    conversion = convert_uri(args.src, args.dst)
    report = conversion.report()
    if args.json:
        print(json.dumps({"dst": args.dst, "names": conversion.names,
                          "images": len(conversion.image_sources), "boxes": conversion.boxes,
                          **report, "warnings": conversion.warnings}, indent=2))
        return 0
    for warning in conversion.warnings:
        print(f"warning: {warning}")
    counts = "".join(f", {k.replace('_', ' ')} {v}" for k, v in report["counts"].items())
    splits = ("train and val from the export" if report["splits"] == "export" else
              "no val subset, so one images/ folder that kfp-yolo splits by val_fraction")
    print(f"{args.src}: {conversion.format} export ({conversion.layout}) converted to {args.dst}: "
          f"{len(conversion.image_sources)} images, {conversion.boxes} boxes, "
          f"{len(conversion.names)} classes{counts}; {splits}. Check it with "
          f"`kfp-yolo dataset check {args.dst}`.")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from kfp_yolo.components.data.synth import SynthSpec, synthesize_into

    spec = SynthSpec(images=args.images, imgsz=args.imgsz, seed=args.seed)
    data_yaml = synthesize_into(args.dir, spec, replace=args.replace)
    print(f"wrote {args.images} synthetic images ({args.imgsz}px, seed {args.seed}) to "
          f"{args.dir}; names and splits in {data_yaml}")
    return 0
