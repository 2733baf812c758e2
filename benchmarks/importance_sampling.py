"""Importance-sampled log p(x) (IFT6135 Problem 2): decodes per second of the estimator against the
bare decoder forward pass at the same batch size, in one run.

    python benchmarks/importance_sampling.py [--checkpoint vae_z100] [--images 500] [--k 200] [--chunk 2000]

The estimator (`helpers.metrics.importance_log_px`) encodes, draws K codes per image, evaluates
log q, log p(z) and log p(x|z) and combines them with log-sum-exp, decoding in chunks of
`--chunk` codes. The baseline decodes the same number of random codes in batches of the same
size and does nothing else. The time of K on all 10,000 test images is extrapolated from
`--images`. The last line reads `importance_sampling: estimator D decodes/s, bare B decodes/s,
ratio R, 10,000 images in T s` (target: R within 1.5, T at most 600 s on 2 cores).
"""
from __future__ import annotations

import argparse
import time

import torch

from helpers import checkpoints, recipes, settings
from helpers.data import binarized_mnist
from helpers.metrics import importance_log_px


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="vae_z100")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--chunk", type=int, default=2000)
    args = parser.parse_args()
    settings.keep_freed_memory()            # both sides: no page faults for large activations
    model = checkpoints.load(args.checkpoint, device="cpu")
    x = binarized_mnist(seed=recipes.BINARIZATION_SEED)["test"][:args.images]
    decodes = args.images * args.k
    per_batch = max(1, args.chunk // args.k)                   # images per batch: chunk decodes each

    start = time.perf_counter()
    importance_log_px(model, x, args.k, batch_size=per_batch, generator=torch.Generator().manual_seed(0))
    estimator = time.perf_counter() - start

    z = torch.randn(args.chunk, model.latent_dim, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(decodes // args.chunk):
            model.decode_params(z)
    bare = time.perf_counter() - start
    bare_rate = (decodes // args.chunk) * args.chunk / bare

    print(f"threads {torch.get_num_threads()}, {args.images} test images, K = {args.k}, chunk {args.chunk}")
    print(f"estimator {estimator:.1f} s, bare decoder {bare:.1f} s")
    print(f"importance_sampling: estimator {decodes / estimator:.0f} decodes/s, bare {bare_rate:.0f} decodes/s, "
          f"ratio {bare_rate / (decodes / estimator):.2f}, 10,000 images in {estimator * 10_000 / args.images:.0f} s")


if __name__ == "__main__":
    main()
