"""Images per second of `helpers.training.fit` against a bare PyTorch loop, same model and data.

    python benchmarks/fit_overhead.py [--images 12800] [--repeats 3]

Both train a fresh `DigitClassifier` for one epoch with Adam on the same MNIST tensors
(batch 128); the best of `--repeats` alternating runs of each is compared. The last line
reads `fit_overhead: fit N img/s, bare M img/s, ratio R` (R = bare time / fit time; 1.0 means
no overhead, the target is >= 0.9).
"""
from __future__ import annotations

import argparse
import time

import torch

from helpers.data import DataMode, MNISTData
from helpers.nets import DigitClassifier
from helpers.training import fit
from helpers.verification import classification_loss


def bare_loop(model, x, y, batch_size):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    order = torch.randperm(len(x))
    for s in range(0, len(x), batch_size):
        idx = order[s:s + batch_size]
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def with_fit(model, x, y, batch_size):
    fit(model, classification_loss, (x, y), epochs=1, batch_size=batch_size, lr=1e-3, progress=True)


def timed(run, x, y, batch_size, width):
    torch.manual_seed(0)
    model = DigitClassifier(width=width)
    start = time.perf_counter()
    run(model, x, y, batch_size)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12_800)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    x, y = MNISTData(DataMode.MONO_FLOAT_COMPLETE).get_full_data_set(training=True)
    x, y = x[:args.images], y[:args.images]
    timed(bare_loop, x[:1024], y[:1024], args.batch_size, args.width)  # warm-up
    bare, ours = [], []
    for _ in range(args.repeats):
        bare.append(timed(bare_loop, x, y, args.batch_size, args.width))
        ours.append(timed(with_fit, x, y, args.batch_size, args.width))
    print(f"threads {torch.get_num_threads()}, {args.images} images, batch {args.batch_size}, "
          f"width {args.width}, best of {args.repeats}")
    print("bare times (s):", " ".join(f"{t:.2f}" for t in bare))
    print("fit  times (s):", " ".join(f"{t:.2f}" for t in ours))
    b, f = min(bare), min(ours)
    print(f"fit_overhead: fit {args.images / f:.0f} img/s, bare {args.images / b:.0f} img/s, ratio {b / f:.3f}")


if __name__ == "__main__":
    main()
