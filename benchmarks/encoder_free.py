"""Encoder-free inference (2AMU20 Task 4a): N test images fitted together in one batched tensor
against the same images fitted one by one, in one run.

    python benchmarks/encoder_free.py [--checkpoint vae_z100] [--images 1000] [--one-by-one 10]

The batched side calls `helpers.inference.fit_posteriors` with its defaults (Adam from the prior,
the running-mean stopping criterion with learning-rate drops, at most 1000 steps) once on all
`--images` binarised test images. The baseline fits the first `--one-by-one` of them one at a time
with exactly the same optimisation: the same number of steps and the learning-rate drops after the
same steps (`schedule=`, replaying the batched run: a single image's running mean is too noisy for
the criterion to stop it at the same point), and is extrapolated to all. The ELBO both reach on the
baseline's images (the mean of 20 one-sample draws each) shows that batching changes nothing but
the time. The last line reads `encoder_free: batched B s, one by one O s (extrapolated), ratio R`
(targets on 2 CPU cores: B at most 60 s, R at least 20).
"""
from __future__ import annotations

import argparse
import time

import torch

from helpers import checkpoints, recipes, settings
from helpers.data import binarized_mnist
from helpers.inference import encoder_free_elbo, fit_posteriors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="vae_z100")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--one-by-one", type=int, default=10)
    args = parser.parse_args()
    settings.keep_freed_memory()
    model = checkpoints.load(args.checkpoint, device="cpu")
    x = binarized_mnist(seed=recipes.BINARIZATION_SEED)["test"][:args.images]
    sample = x[:args.one_by_one]

    start = time.perf_counter()
    batched, _ = fit_posteriors(model, x, progress=False)
    batched_seconds = time.perf_counter() - start
    steps = batched.fit_info["steps"]

    single_seconds, single_elbo = [], []
    for i in range(len(sample)):
        start = time.perf_counter()
        posterior, _ = fit_posteriors(model, sample[i:i + 1], max_steps=steps, schedule=batched.fit_info["drop_steps"],
                                      seed=i, progress=False)
        single_seconds.append(time.perf_counter() - start)
        single_elbo.append(encoder_free_elbo(posterior, torch.Generator().manual_seed(i), draws=20))
    one_by_one = sum(single_seconds) / len(sample) * len(x)
    batched_elbo = encoder_free_elbo(batched, torch.Generator().manual_seed(0), draws=20)[:len(sample)]

    print(f"{args.checkpoint}: {len(x)} binarised test images, {torch.get_num_threads()} threads")
    print(f"batched: {len(x)} images together, {steps} steps (stopped by the criterion: "
          f"{batched.fit_info['stopped_at'] is not None}; rate lowered after steps {batched.fit_info['drop_steps']}), "
          f"{batched_seconds:.1f} s = {batched_seconds / steps * 1000:.0f} ms per step")
    print(f"one by one: {len(sample)} images, the same {steps} steps and drops each, "
          f"{sum(single_seconds) / len(sample):.2f} s per image = {sum(single_seconds) / len(sample) / steps * 1000:.1f} ms "
          f"per step -> {one_by_one:.0f} s extrapolated to {len(x)} images")
    print(f"ELBO of those {len(sample)} images (mean of 20 draws): batched {batched_elbo.mean():.2f}, "
          f"one by one {torch.cat(single_elbo).mean():.2f} nats")
    print(f"encoder_free: batched {batched_seconds:.1f} s, one by one {one_by_one:.0f} s (extrapolated), "
          f"ratio {one_by_one / batched_seconds:.1f}")


if __name__ == "__main__":
    main()
