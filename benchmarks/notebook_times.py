"""Run time of every notebook, executed from the shipped weights as nbval does, against the budget.

    python benchmarks/notebook_times.py [notebooks/NN_*.ipynb ...]

Each notebook is executed in a fresh kernel with nbclient (outputs discarded, the stored file is
left alone). The baseline, measured in the same run, is a notebook holding only the imports every
notebook makes (kernel start, torch, helpers): the part of each time no notebook can avoid. Lines
read `NN_topic: T s (budget 180 s) OK|OVER`; the last line counts the notebooks over budget.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 180.0


def run(nb) -> float:
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    baseline = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nimport torch\nfrom helpers import checkpoints, metrics, plotting, recipes, settings")])
    base = run(baseline)
    print(f"baseline (kernel start and imports): {base:.1f} s")
    over = 0
    for path in paths:
        seconds = run(nbformat.read(path, as_version=4))
        ok = seconds <= BUDGET
        over += not ok
        print(f"{path.stem}: {seconds:.0f} s (budget {BUDGET:.0f} s, {seconds - base:.0f} s beyond the baseline) "
              f"{'OK' if ok else 'OVER'}")
    print(f"notebook_times: {len(paths)} notebooks, {over} over the {BUDGET:.0f} s budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
