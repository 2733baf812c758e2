"""Images per second of one training step in fp32 against faster settings on this CPU, in one run.

    python benchmarks/training_throughput.py [--iterations 40] [--repeats 3] [--threads N]

Steps: the DCGAN step (`divergences.dcgan_step`, dcgan_mnist's networks, batch 64), the WGAN-GP step
(`divergences.wgan_gp_step` with its gradient penalty, n_critic 5, so one generator step per five
iterations as in training, batch 64) and a VAE step (`vae_mono`'s model and loss, batch 128).
Settings: fp32 (the baseline), bf16 autocast (`torch.autocast("cpu", torch.bfloat16)`, the CPU's
avx512_bf16), and channels_last memory format with and without bf16. Each setting runs
`--iterations` steps after 5 warm-up steps on random images from a fixed generator; the best of
`--repeats` alternating runs counts. The last lines read `STEP SETTING: N img/s, ratio R` with
R = fp32 time / setting time (above 1: faster than fp32).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import time

import torch

from helpers.divergences import dcgan_step, gan_optimizers, wgan_gp_step
from helpers.models import GAN, VAE, model_loss
from helpers.training import loss_step

SETTINGS = ("fp32", "bf16", "channels_last", "channels_last+bf16")


def build(kind: str, setting: str):
    """(model, step, optimizers, batch) for one step kind under one setting, from fixed seeds."""
    torch.manual_seed(0)
    if kind == "vae":
        model = VAE(channels=1, latent_dim=16, width=32)
        optimizers = {"model": torch.optim.Adam(model.parameters(), lr=1e-3)}
        step, batch = loss_step(model_loss), 128
        images = (torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    else:
        model = GAN(channels=1, latent_dim=100, width=64, d_norm="batch" if kind == "dcgan" else None)
        optimizers = gan_optimizers(model, 2e-4, (0.5, 0.999))
        step = dcgan_step if kind == "dcgan" else functools.partial(wgan_gp_step, n_critic=5, penalty=10.0)
        batch = 64
        images = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    if "channels_last" in setting:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    return model, step, optimizers, (images,)


def run(kind: str, setting: str, iterations: int) -> float:
    """Seconds for `iterations` steps (after 5 warm-up steps)."""
    model, step, optimizers, batch = build(kind, setting)
    model.train()
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if "bf16" in setting else contextlib.nullcontext())
    with autocast:
        for i in range(5):
            step(model, batch, optimizers, i)
        start = time.perf_counter()
        for i in range(5, 5 + iterations):
            step(model, batch, optimizers, i)
        return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.iterations} iterations, "
          f"best of {args.repeats}")
    for kind, batch in (("dcgan", 64), ("wgan_gp", 64), ("vae", 128)):
        best = {s: float("inf") for s in SETTINGS}
        for _ in range(args.repeats):
            for setting in SETTINGS:                     # alternating, so drifts of the machine hit all
                best[setting] = min(best[setting], run(kind, setting, args.iterations))
        for setting in SETTINGS:
            rate = args.iterations * batch / best[setting]
            print(f"{kind} {setting}: {rate:.0f} img/s, ratio {best['fp32'] / best[setting]:.2f}")


if __name__ == "__main__":
    main()
