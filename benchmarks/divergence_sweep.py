"""Seconds of the IFT6135 Problem 1.3 sweep (JSD and Wasserstein estimators for 21 thetas):
one grouped model per estimator against the 42 estimators trained one after another.

    python benchmarks/divergence_sweep.py [--few 3] [--threads 1]

Batched: `helpers.divergences.parallel_lines_sweep` on the 21 thetas -1, -0.9, ..., 1 (one
grouped discriminator and one grouped critic, G = 21). One by one: the same call with a single
theta (G = 1, same data sizes, epochs and optimiser), timed on `--few` thetas spread over the
range and extrapolated to 21. Torch runs `--threads` intra-op threads, 1 by default as in notebook
10 (the matrices are small; on a busy machine two threads waiting on each other are much slower).
Wall-clock and CPU seconds and the load average are printed (on a busy machine the CPU time is
the better guide to an idle one). The last line reads
`divergence_sweep: batched B s, one by one O s, ratio R` (wall-clock, R = O / B; the workbook
target is B <= 60 s on 2 cores).
"""
from __future__ import annotations

import argparse
import os

import torch

from helpers.divergences import LOG2, parallel_lines_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--few", type=int, default=3, help="thetas trained one by one (extrapolated to 21)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    thetas = torch.arange(-10, 11) / 10

    parallel_lines_sweep(thetas[:2], n_train=512 * 4, n_test=100, jsd_epochs=1, wd_epochs=1, progress=False)
    batched = parallel_lines_sweep(thetas, progress=False)
    wd_error = (batched.wd - thetas.abs()).abs().max().item()
    far = thetas.abs() >= 0.2
    jsd_error = (batched.jsd[far] - LOG2).abs().max().item()

    picks = torch.linspace(0, len(thetas) - 1, args.few).round().long().tolist()
    wall, cpu = [], []
    for i in picks:
        single = parallel_lines_sweep(thetas[i:i + 1], progress=False)
        wall.append(single.seconds)
        cpu.append(single.cpu_seconds)
    one_by_one = sum(wall) / len(wall) * len(thetas)
    one_by_one_cpu = sum(cpu) / len(cpu) * len(thetas)

    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"21 thetas x (JSD discriminator + WGAN-GP critic)")
    print(f"batched: wall {batched.seconds:.1f} s, CPU {batched.cpu_seconds:.1f} s; "
          f"max |WD - |theta|| {wd_error:.3f}, max |JSD - log 2| (|theta| >= 0.2) {jsd_error:.3f}")
    print(f"one by one, thetas {[round(thetas[i].item(), 1) for i in picks]}: wall "
          + " ".join(f"{t:.1f}" for t in wall) + " s, CPU " + " ".join(f"{t:.1f}" for t in cpu)
          + f" s; x 21 = wall {one_by_one:.1f} s, CPU {one_by_one_cpu:.1f} s")
    print(f"CPU-time ratio {one_by_one_cpu / batched.cpu_seconds:.1f}")
    print(f"divergence_sweep: batched {batched.seconds:.1f} s, one by one {one_by_one:.1f} s, "
          f"ratio {one_by_one / batched.seconds:.1f}")


if __name__ == "__main__":
    main()
