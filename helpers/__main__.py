"""Command line: `python -m helpers train NAME`, `train --all`, `evaluate NAME` (or `NAME:PART`, a
checkpoint's further named evaluation), `list`, `report`."""
from __future__ import annotations

import argparse
import sys

from . import checkpoints, recipes, settings


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
    ev = sub.add_parser("evaluate", help="run a checkpoint's heavy evaluation once and store it in the manifest")
    ev.add_argument("names", nargs="+", help=f"evaluation names (checkpoint or checkpoint:part): "
                    f"{', '.join(sorted(recipes.EVALUATIONS))}")
    sub.add_parser("list", help="list checkpoints and their metrics")
    sub.add_parser("report", help="print the manifest's metrics and training times")
    args = parser.parse_args(argv)
    settings.keep_freed_memory()

    if args.command == "train":
        names = sorted(recipes.RECIPES) if args.all else args.names
        if not names:
            parser.error("name at least one checkpoint, or use --all")
        unknown = [n for n in names if n not in recipes.RECIPES]
        if unknown:
            parser.error(f"unknown checkpoint(s) {unknown}; known: {sorted(recipes.RECIPES)}")
        for name in names:
            recipes.train(name)
            print(f"{name}: {checkpoints.read_manifest().get(name, {}).get('metrics')}")
    elif args.command == "evaluate":
        unknown = [n for n in args.names if n not in recipes.EVALUATIONS]
        if unknown:
            parser.error(f"no evaluation for {unknown}; known: {sorted(recipes.EVALUATIONS)}")
        for name in args.names:
            print(f"{name}: {recipes.evaluate(name)}")
    elif args.command == "list":
        _list()
    else:
        for name, meta in sorted(checkpoints.read_manifest().items()):
            print(f"{name}: trained {meta.get('trained_seconds')} s, {meta.get('metrics')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
