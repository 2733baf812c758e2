"""The Fréchet distance of features (FID; IFT6135 Problem 3, notebook 11), and two image statistics
that notebook 11 sets beside it: sharpness and mean pairwise distance.

FID (Heusel et al. 2017) compares two sets of images by the means and covariances of a classifier's
features: d^2 = ||mu_p - mu_q||^2 + Tr(S_p + S_q - 2 (S_p S_q)^(1/2)). The conventions follow the
reference implementation (TTUR's, as pytorch-fid's `calculate_frechet_distance`): moments in
float64, covariances with the n - 1 denominator, the matrix square root by scipy.linalg.sqrtm,
retried with 1e-6 added to both diagonals when it is not finite, and its imaginary part (round-off
of a nearly singular product) dropped when every diagonal entry's is below 1e-3, an error above.
The covariance of d features needs well over d images: with n <= d it is singular (rank n - 1 < d)
and the estimate badly biased, so that is an error; the estimate is biased upwards by roughly
Tr-terms of order d / n, so compare FIDs only at equal sample counts.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

FID_EPS = 1e-6            # added to the covariance diagonals when the square root is not finite
FID_MAX_IMAG = 1e-3       # largest imaginary part of sqrtm's diagonal that counts as round-off


class FeatureMoments(NamedTuple):
    """Mean (d,), covariance (d, d) (n - 1 denominator) and count n of a set of features, float64 numpy."""
    mean: np.ndarray
    cov: np.ndarray
    n: int


def feature_moments(batches: Iterable, name: str = "features") -> FeatureMoments:
    """Mean and covariance of features given as an iterable of (B, d) batches (tensors or arrays),
    accumulated batch by batch in float64 (Chan et al.'s pairwise update: memory stays at one
    batch, and the result does not depend on how the rows are batched). Errors: no rows, a batch
    that is not 2-D, batches of different d, a NaN or infinite feature, n <= d."""
    n, mean, scatter, d = 0, None, None, None
    for i, batch in enumerate(batches):
        b = (batch.detach().cpu().double().numpy() if isinstance(batch, torch.Tensor)
             else np.asarray(batch, dtype=np.float64))
        if b.ndim != 2:
            raise ValueError(f"{name}: every batch must be a (B, d) matrix of features, batch {i} has shape {b.shape}")
        if d is None:
            d, mean, scatter = b.shape[1], np.zeros(b.shape[1]), np.zeros((b.shape[1], b.shape[1]))
        elif b.shape[1] != d:
            raise ValueError(f"{name}: batch {i} has {b.shape[1]} features, the first batch had {d}")
        if not np.isfinite(b).all():
            raise ValueError(f"{name}: batch {i} holds NaN or infinite features")
        m = len(b)
        if m == 0:
            continue
        b_mean = b.mean(0)
        centred = b - b_mean
        delta = b_mean - mean
        total = n + m
        scatter += centred.T @ centred + np.outer(delta, delta) * (n * m / total)
        mean += delta * (m / total)
        n = total
    if n == 0:
        raise ValueError(f"{name}: no features (an empty iterator or only empty batches)")
    if n <= d:
        raise ValueError(f"{name}: {n} feature vectors of dimension {d}: a covariance of {d} features needs "
                         f"more than {d} samples (well over: use at least several times {d}, e.g. 1,000)")
    return FeatureMoments(mean, scatter / (n - 1), n)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = FID_EPS) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)) for means (d,) and covariances
    (d, d) (arrays or tensors; computed in float64 with scipy.linalg.sqrtm, see the section note)."""
    from scipy import linalg
    mu1, mu2 = (np.atleast_1d(np.asarray(m, dtype=np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"means must be (d,) and covariances (d, d) with one d, got {mu1.shape}, "
                         f"{sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("the means and covariances must be finite (no NaN or infinity)")
    diff = mu1 - mu2
    import warnings
    with np.errstate(all="ignore"), warnings.catch_warnings():
        # a singular product is common (a feature that is always 0, e.g. a dead ReLU unit, gives a zero
        # row and column); scipy warns about it, the result is checked for finiteness below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(d) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if not np.isfinite(covmean).all():
        raise ValueError("the matrix square root of sigma1 sigma2 is not finite, even with "
                         f"{eps:g} added to the diagonals")
    if np.iscomplexobj(covmean):
        largest = np.abs(np.diagonal(covmean).imag).max()
        if largest > FID_MAX_IMAG:
            raise ValueError(f"the matrix square root of sigma1 sigma2 has an imaginary part of {largest:.3g} on "
                             f"its diagonal (more than {FID_MAX_IMAG:g}): the covariances are not valid")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def calculate_fid_score(sample_features: Iterable, test_features: Iterable) -> float:
    """FID between two sets of features, each an iterator of (B, d) batches (tensors or arrays),
    as IFT6135 Problem 3 asks: the moments of each set (`feature_moments`) and their Fréchet
    distance (`frechet_distance`). Symmetric in its arguments; 0 for two identical sets."""
    p = feature_moments(sample_features, "sample_features")
    q = feature_moments(test_features, "test_features")
    if len(p.mean) != len(q.mean):
        raise ValueError(f"sample features have {len(p.mean)} dimensions, test features {len(q.mean)}")
    return frechet_distance(p.mean, p.cov, q.mean, q.cov)


@torch.no_grad()
def feature_batches(features, images: torch.Tensor, batch_size: int = 500):
    """Yield features(batch) -> (B, d) on the CPU for consecutive batches of images (N, C, S, S),
    without gradients: the iterator `calculate_fid_score` takes."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(images), batch_size):
        yield features(images[start:start + batch_size]).cpu()


LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
LUMA = torch.tensor([0.299, 0.587, 0.114])          # ITU-R BT.601 weights of R, G, B in a grey value


def sharpness(images: torch.Tensor) -> torch.Tensor:
    """(N, C, S, S) in [0, 1] -> (N,): the mean absolute response of the 3x3 Laplacian filter on the
    grey-value image (C = 3: the BT.601 luma; C = 1: the image), inside the 1-pixel border. High
    where edges are crisp, low where the image is smooth; noise raises it too."""
    if images.dim() != 4 or images.shape[1] not in (1, 3) or min(images.shape[-2:]) < 3:
        raise ValueError(f"images must be (N, 1 or 3, S, S) with S >= 3, got {tuple(images.shape)}")
    grey = images if images.shape[1] == 1 else (images * LUMA.to(images).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return F.conv2d(grey, LAPLACE.to(images)).abs().flatten(1).mean(1)


def mean_pairwise_distance(x: torch.Tensor) -> float:
    """The mean Euclidean distance between two different rows of x (N, D), N >= 2: a set's spread."""
    if x.dim() != 2 or len(x) < 2:
        raise ValueError(f"x must be (N, D) with N >= 2, got {tuple(x.shape)}")
    x = x.double()
    return (torch.cdist(x, x).sum() / (len(x) * (len(x) - 1))).item()
