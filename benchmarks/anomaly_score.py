"""Prior Monte-Carlo log p(x) on the whole test set: batched scorer vs the per-image loop.

    python benchmarks/anomaly_score.py [--checkpoint vae_mono_missing] [--samples 10000] [--loop-images 20]

The batched scorer (`helpers.metrics.prior_log_px_bernoulli`) decodes the N prior samples once
and scores all test images against them as chunked matrix products. The loop the assignment
describes (`prior_log_px_loop`) pushes N samples through the decoder for every image; it is run
on `--loop-images` images and extrapolated to the full test set. Both use the same samples, and
their scores are compared on those images. Also times a bare (10,000 x D) @ (D x N) matmul as
the floor. The last line reads `anomaly_score: batched B s, loop L s, ratio R`.
"""
from __future__ import annotations

import argparse
import time

import torch

from helpers import checkpoints
from helpers.data import DataMode, MNISTData
from helpers.metrics import prior_log_px_bernoulli, prior_log_px_loop


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="vae_mono_missing")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--loop-images", type=int, default=20)
    args = parser.parse_args()

    model = checkpoints.load(args.checkpoint, device="cpu")
    mode = DataMode.of(color=model.channels == 3, binary=True, missing=False)
    x, _ = MNISTData(mode).get_full_data_set(training=False)
    d = x[0].numel()

    a, b = torch.rand(len(x), d), torch.rand(d, args.samples)
    _, matmul = timed(lambda: a @ b)
    del a, b

    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731 - same samples for both scorers
    scores, batched = timed(lambda: prior_log_px_bernoulli(model, x, args.samples, generator=gen()))
    subset = x[:args.loop_images]
    loop_scores, loop_part = timed(lambda: prior_log_px_loop(model, subset, args.samples, generator=gen()))
    loop = loop_part * len(x) / len(subset)
    diff = (scores[:len(subset)] - loop_scores).abs().max().item()

    print(f"{args.checkpoint}: {len(x)} test images x {args.samples} prior samples, D = {d}, "
          f"{torch.get_num_threads()} threads")
    print(f"bare ({len(x)} x {d}) @ ({d} x {args.samples}) matmul: {matmul:.2f} s")
    print(f"batched scorer: {batched:.2f} s ({batched / matmul:.1f} x the bare matmul)")
    print(f"per-image loop: {loop_part:.2f} s for {len(subset)} images -> {loop:.1f} s extrapolated")
    print(f"max |batched - loop| on those images: {diff:.2e} nats")
    print(f"anomaly_score: batched {batched:.1f} s, loop {loop:.1f} s, ratio {loop / batched:.0f}")


if __name__ == "__main__":
    main()
