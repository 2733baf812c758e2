"""Command line: `python -m helpers train NAME`, `train --all`, `evaluate NAME` (or `NAME:PART`, a
checkpoint's further named evaluation), `fid SAMPLE_DIR [SAMPLE_DIR ...]`, `list`, `report`."""
from __future__ import annotations

import argparse
import sys

from . import checkpoints, recipes, settings
from .data import DatasetCorruptError, DatasetNotFoundError
from .training import ResumeError, ResumeMismatchError


def _list() -> None:
    manifest = checkpoints.read_manifest()
    for name in sorted(set(recipes.RECIPES) | set(manifest)):
        meta = manifest.get(name)
        state = "shipped" if meta else "not trained"
        metrics = ", ".join(f"{k}={v}" for k, v in (meta or {}).get("metrics", {}).items())
        print(f"{name:24s} {state:12s} {metrics}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train checkpoints from their recipes and save them")
    train.add_argument("names", nargs="*", help=f"checkpoint names: {', '.join(sorted(recipes.RECIPES))}")
    train.add_argument("--all", action="store_true", help="train every checkpoint")
    train.add_argument("--no-evaluate", action="store_true",
                       help="skip the checkpoint's stored evaluations after training (they stay in the "
                            "manifest, marked stale, until `python -m helpers evaluate NAME` runs)")
    ev = sub.add_parser("evaluate", help="run a checkpoint's heavy evaluation once and store it in the manifest")
    ev.add_argument("names", nargs="+", help=f"evaluation names (checkpoint or checkpoint:part): "
                    f"{', '.join(sorted(recipes.EVALUATIONS))}")
    fid = sub.add_parser("fid", help="FID of the PNG images in a directory against the test set (IFT6135's score_fid.py)",
                         description="Reads the PNGs of SAMPLE_DIR (and of its subdirectories, e.g. "
                         "SAMPLE_DIR/samples/), checks they are 28x28 greyscale (MNIST) or 32x32 RGB (SVHN), "
                         "and prints their FID against the test set on the penultimate layer of the "
                         "verification net (MNIST) or of the SVHN classifier (SVHN). Several directories "
                         "are scored one by one against the same test set, its features computed once.")
    fid.add_argument("sample_dir", nargs="+", help="directory of .png samples (one or more)")
    fid.add_argument("--dataset", choices=recipes.FID_DATASETS, default="mnist",
                     help="test set and features: mnist (grey test images), mnist-binary (binarised), "
                          "svhn (the held-out SVHN part); default mnist")
    fid.add_argument("--test-samples", type=int, default=None, metavar="N",
                     help="use the first N test images (default: all of them)")
    sub.add_parser("list", help="list checkpoints and their metrics")
    sub.add_parser("report", help="print the manifest's metrics and training times")
    args = parser.parse_args(argv)
    settings.keep_freed_memory()
    try:
        return _run(args, parser)
    except (checkpoints.CheckpointError, ResumeError, ResumeMismatchError, DatasetNotFoundError,
            DatasetCorruptError) as exc:
        print(f"python -m helpers {args.command}: {exc}", file=sys.stderr)
        return 2


def _run(args, parser) -> int:

    if args.command == "train":
        names = sorted(recipes.RECIPES) if args.all else args.names
        if not names:
            parser.error("name at least one checkpoint, or use --all")
        unknown = [n for n in names if n not in recipes.RECIPES]
        if unknown:
            parser.error(f"unknown checkpoint(s) {unknown}; known: {sorted(recipes.RECIPES)}")
        for name in names:
            recipes.train(name, evaluate_after=not args.no_evaluate)
            print(f"{name}: {checkpoints.read_manifest().get(name, {}).get('metrics')}")
            for key in ([] if settings.smoke_mode() else recipes.evaluations_of(name)):
                part = key.partition(":")[2] or None
                print(f"  evaluation {key}: {checkpoints.evaluation_status(name, part)}")
    elif args.command == "evaluate":
        unknown = [n for n in args.names if n not in recipes.EVALUATIONS]
        if unknown:
            parser.error(f"no evaluation for {unknown}; known: {sorted(recipes.EVALUATIONS)}")
        for name in args.names:
            print(f"{name}: {recipes.evaluate(name)}")
    elif args.command == "fid":
        try:
            results = recipes.fid_of_directories(args.sample_dir, args.dataset, args.test_samples)
        except (ValueError, OSError, checkpoints.CheckpointError, DatasetNotFoundError, DatasetCorruptError) as exc:
            print(f"python -m helpers fid: {exc}", file=sys.stderr)
            return 2
        for directory, result in zip(args.sample_dir, results):
            if len(results) > 1:
                print(f"{directory}:")
            print(f"FID: {result.fid:.4f}")
            print(f"{result}; features {result.seconds_features:.2f} s, distance {result.seconds_distance:.2f} s")
    elif args.command == "list":
        _list()
    else:
        for name, meta in sorted(checkpoints.read_manifest().items()):
            print(f"{name}: trained {meta.get('trained_seconds')} s, {meta.get('metrics')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
