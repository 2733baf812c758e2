"""`python -m helpers fid DIR` on 1,000 PNGs, timed from the outside (startup included), against a
bare baseline measured in the same run.

    python benchmarks/fid.py [--checkpoint dcgan_mnist] [--dataset mnist] [--samples 1000]

Writes `--samples` samples of the checkpoint as PNGs into a temporary directory, runs the command
as a subprocess (a fresh Python: imports, loading the classifier and the test set, reading the PNGs,
features, distance) and reads the feature and distance times it prints. The baseline does the
least the score needs, in this process with everything already loaded: the classifier's
penultimate features of the test images and of the samples (one forward pass each) and
pytorch-fid's `calculate_frechet_distance` on their moments. The scores must agree (the command
reads 8-bit PNGs, the baseline uses the float samples, so to about 0.5). The last line reads
`fid: command C s (features F s, distance D s), bare baseline B s; target C <= 20 s`.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from helpers import checkpoints, recipes
from helpers.metrics import draw_samples, write_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="dcgan_mnist")
    parser.add_argument("--dataset", default="mnist", choices=recipes.FID_DATASETS)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    model = checkpoints.load(args.checkpoint, device="cpu")

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / args.checkpoint
        write_samples(model, args.samples, directory, torch.Generator().manual_seed(0))
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "helpers", "fid", str(directory), "--dataset", args.dataset],
                             capture_output=True, text=True, check=True)
        command_seconds = time.perf_counter() - start
    score = float(re.search(r"FID: ([0-9.]+)", run.stdout).group(1))
    features_s, distance_s = (float(v) for v in re.search(r"features ([0-9.]+) s, distance ([0-9.]+) s",
                                                          run.stdout).groups())

    from pytorch_fid.fid_score import calculate_frechet_distance
    features, _, _, described = recipes.fid_feature_extractor(args.dataset)
    test, _ = recipes.fid_test_images(args.dataset)
    samples = draw_samples(model, args.samples, torch.Generator().manual_seed(0))
    start = time.perf_counter()
    with torch.no_grad():
        f_test, f_samples = features(test).double().numpy(), features(samples).double().numpy()
    moments = [(f.mean(0), np.cov(f, rowvar=False)) for f in (f_samples, f_test)]
    bare = calculate_frechet_distance(*moments[0], *moments[1])
    baseline_seconds = time.perf_counter() - start

    print(f"{args.checkpoint}: {args.samples} PNGs against {len(test):,} test images ({args.dataset}), "
          f"{described}, {torch.get_num_threads()} threads")
    print(f"command: FID {score:.4f}; baseline (float samples, pytorch-fid distance): FID {bare:.4f}")
    print(f"fid: command {command_seconds:.1f} s (features {features_s:.2f} s, distance {distance_s:.2f} s), "
          f"bare baseline {baseline_seconds:.1f} s; target {command_seconds:.1f} <= 20 s")


if __name__ == "__main__":
    main()
