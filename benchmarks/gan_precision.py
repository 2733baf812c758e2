"""Does bf16 autocast train the GANs as well as float32? The same run twice, side by side.

    python benchmarks/gan_precision.py [--epochs 2] [--samples 2000] [--out benchmarks/results/gan_precision.png]

For the DCGAN (dcgan_mnist's settings) and the WGAN-GP (wgan_gp_mnist's settings): a GAN from the
same seed trained on grey MNIST for `--epochs` epochs through `divergences.fit_gan`, once in float32
and once with `autocast="bf16"`; the same minibatch order and noise draws (the seeds are equal; the
rounding of bf16 makes the runs drift apart). Printed per run: the wall time, the last epoch's mean
losses, and the verifier's predictability (tolerance 0.8) and KL to uniform of `--samples` samples
from torch.Generator().manual_seed(0). The figure shows the logged losses of both runs per step.
"""
from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from helpers import recipes, settings  # noqa: E402
from helpers.data import MNISTData  # noqa: E402
from helpers.divergences import dcgan_step, fit_gan, wgan_gp_step  # noqa: E402
from helpers.metrics import draw_samples, generation_quality  # noqa: E402
from helpers.models import GAN  # noqa: E402


def train(name: str, epochs: int, autocast: str | None):
    s = recipes.GAN_SETTINGS[name]
    x, _ = MNISTData(s["mode"]).get_full_data_set(training=True)
    with settings.forked_rng(0):
        model = GAN(channels=1, latent_dim=100, width=64, d_norm=s["d_norm"])
        step = (functools.partial(wgan_gp_step, n_critic=s["n_critic"], penalty=s["penalty"]) if s.get("n_critic")
                else dcgan_step)
        start = time.perf_counter()
        history = fit_gan(model, x, step, lr=s["lr"], betas=s["betas"], epochs=epochs, batch_size=s["batch_size"],
                          desc=f"{name} {autocast or 'fp32'}", progress="epochs", autocast=autocast)
    return model.eval(), history, time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--out", default="benchmarks/results/gan_precision.png")
    args = parser.parse_args(argv)
    verifier = recipes.load_verifier()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, (name, key) in zip(axes, (("dcgan_mnist", "loss_d"), ("wgan_gp_mnist", "wasserstein"))):
        for autocast in (None, "bf16"):
            model, history, seconds = train(name, args.epochs, autocast)
            samples = draw_samples(model, args.samples, torch.Generator().manual_seed(0))
            q = generation_quality(verifier, samples, tolerance=0.8)
            last = history.epochs[-1]
            losses = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k.startswith("train_"))
            label = autocast or "fp32"
            print(f"{name} {label}: {seconds:.0f} s for {args.epochs} epochs; last epoch {losses}; "
                  f"{args.samples} samples: predictability {q['predictability']:.3f}, KL to uniform {q['kl']:.3f}")
            steps = [r["step"] for r in history.steps]
            ax.plot(steps, [r[key] for r in history.steps], lw=1, label=f"{label} (predictability {q['predictability']:.3f})")
        ax.set_xlabel("iteration"), ax.set_ylabel(key), ax.set_title(f"{name}: float32 against bf16 autocast")
        ax.legend(fontsize=8), ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
