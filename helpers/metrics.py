"""Scores of models: ELBO, log-likelihood estimates, anomaly ranking.

Images are (N, C, 28, 28) in [0, 1]; every per-image score is an (N,) tensor.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .data import validate_images
from .models import gaussian_kl


@torch.no_grad()
def batched(fn, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Apply fn((B, ...)) -> (B, ...) over x in batches without gradients; result on CPU."""
    return torch.cat([fn(x[i:i + batch_size]).cpu() for i in range(0, len(x), batch_size)])


def reconstruction_accuracy(model: nn.Module, verifier, x: torch.Tensor, labels: torch.Tensor,
                            tolerance: float | None = None) -> float:
    """Fraction of images x (N, C, 28, 28) whose reconstruction the verifier classifies as the
    original's label (N,) with confidence >= tolerance (default 0.8 mono, 0.5 stacked)."""
    return verifier.predictability(batched(model.reconstruct, x), labels, tolerance).accuracy


def generation_quality(verifier, samples: torch.Tensor, tolerance: float | None = None) -> dict:
    """{"predictability", "coverage"} of generated images (N, C, 28, 28)."""
    return {"predictability": verifier.predictability(samples, tolerance=tolerance).predictability,
            "coverage": verifier.coverage(samples, tolerance)}


def anomaly_summary(scores: torch.Tensor, is_anomaly: torch.Tensor, k: int = 16) -> dict:
    """Higher score = more anomalous. {"top_k" indices, "top_k_fraction" of anomalies among the
    k highest, "roc_auc" of detecting anomalies by the score, "base_rate" of anomalies}."""
    top = top_k(scores, k)
    return {"top_k": top, "top_k_fraction": is_anomaly[top].float().mean().item(),
            "roc_auc": roc_auc(scores, is_anomaly), "base_rate": is_anomaly.float().mean().item()}


@torch.no_grad()
def elbo(model: nn.Module, x: torch.Tensor, batch_size: int = 2000, seed: int = 0) -> torch.Tensor:
    """(N, C, 28, 28) -> (N,) one-sample ELBO of a VAE (seeded)."""
    torch.manual_seed(seed)
    return batched(lambda b: model.elbo_terms(b)["elbo"], x, batch_size)


@torch.no_grad()
def discrete_elbo(model: nn.Module, x: torch.Tensor, levels: int = 256, batch_size: int = 1000,
                  seed: int = 0) -> torch.Tensor:
    """(N, C, 28, 28) grey images -> (N,) one-sample ELBO with log P(x | z) the probability of the
    discrete `levels`-level image (`Likelihood.discrete_log_prob`): comparable across decoders."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for xb in x.split(batch_size):
        mu, logvar = model.posterior(xb)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g).to(mu.device)
        rec = model.likelihood.discrete_log_prob(model.decode_params(z), xb.to(mu.device), levels)
        out.append((rec - gaussian_kl(mu, logvar)).cpu())
    return torch.cat(out)


@torch.no_grad()
def prior_log_px_bernoulli(model: nn.Module, x: torch.Tensor, n_samples: int = 10_000,
                           image_chunk: int = 2000, sample_chunk: int = 2500,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Monte-Carlo log p(x) = log (1/S) sum_s p(x | z_s), z_s ~ p(z), for a Bernoulli-decoder VAE.

    x: (M, C, 28, 28). The S prior samples are decoded once; because
    log p(x | z) = x . l(z) - sum_d softplus(l_d(z)) is linear in x, all images are scored
    against all samples as a matrix product (M, D) @ (D, S), in chunks so that memory stays at
    (image_chunk x sample_chunk) scores; a running log-sum-exp combines the sample chunks.
    Returns (M,) in nats.
    """
    validate_images(x, channels=(model.channels,))
    device = model.device
    flat = x.reshape(len(x), -1).to(device)
    z = torch.randn(n_samples, model.latent_dim, generator=generator).to(device)
    total = torch.full((len(x),), -math.inf, device=device)
    for s in range(0, n_samples, sample_chunk):
        logits = model.decode_params(z[s:s + sample_chunk]).reshape(len(z[s:s + sample_chunk]), -1)  # (S', D)
        bias = F.softplus(logits).sum(1)                                                            # (S',)
        for i in range(0, len(x), image_chunk):
            scores = flat[i:i + image_chunk] @ logits.T - bias                                      # (M', S')
            total[i:i + image_chunk] = torch.logaddexp(total[i:i + image_chunk], scores.logsumexp(1))
    return (total - math.log(n_samples)).cpu()


@torch.no_grad()
def prior_log_px_loop(model: nn.Module, x: torch.Tensor, n_samples: int = 10_000,
                      generator: torch.Generator | None = None, batch_size: int = 1000) -> torch.Tensor:
    """The same estimate as `prior_log_px_bernoulli`, the way the assignment describes it: for
    each image, push the samples through the decoder and compute the cross-entropy. Slow; it is
    the reference the batched scorer is tested and benchmarked against. x: (M, C, 28, 28) -> (M,)."""
    validate_images(x, channels=(model.channels,))
    z = torch.randn(n_samples, model.latent_dim, generator=generator).to(model.device)
    out = []
    for image in x.to(model.device):
        logp = torch.cat([model.log_px_given_z(image.expand(len(zb), *image.shape), zb)
                          for zb in z.split(batch_size)])
        out.append(logp.logsumexp(0) - math.log(n_samples))
    return torch.stack(out).cpu()


def log_mean_exp(log_w: torch.Tensor, dim: int) -> torch.Tensor:
    """log(mean(exp(log_w))) along `dim`, stably: logsumexp - log K (no exp of very negative logs)."""
    return log_w.logsumexp(dim) - math.log(log_w.shape[dim])


@torch.no_grad()
def sample_posterior(model: nn.Module, x: torch.Tensor, n_samples: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """K samples z_ik ~ q(z | x_i) by reparameterisation: images (M, ...) -> (M, K, L)."""
    mu, logvar = model.posterior(x.reshape(len(x), *model.image_shape))
    eps = torch.randn(len(x), n_samples, mu.shape[1], generator=generator).to(mu.device)
    return mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps


@torch.no_grad()
def importance_log_likelihood(model: nn.Module, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Importance-sampled log p(x_i) with q(z | x_i) as proposal.

    x: (M, D) images (flattened), z: (M, K, L) samples z_ik ~ q(z | x_i). Returns (M,):
        log p(x_i) ~ log (1/K) sum_k exp(log p(x_i | z_ik) + log p(z_ik) - log q(z_ik | x_i)),
    computed with log-sum-exp.
    """
    m, k, latent = z.shape
    if x.dim() != 2 or len(x) != m:
        raise ValueError(f"x must be (M, D) with M = {m} (the first dimension of z), got {tuple(x.shape)}")
    images = x.reshape(m, *model.image_shape).to(z.device)
    mu, logvar = model.posterior(images)                                           # (M, L) each
    normal = torch.distributions.Normal
    log_q = normal(mu[:, None], torch.exp(0.5 * logvar)[:, None]).log_prob(z).sum(-1)   # (M, K)
    log_prior = normal(0.0, 1.0).log_prob(z).sum(-1)                                # (M, K)
    repeated = images.repeat_interleave(k, dim=0)                                   # row i*K + k is x_i
    log_lik = model.log_px_given_z(repeated, z.reshape(m * k, latent)).view(m, k)   # (M, K)
    return log_mean_exp(log_lik + log_prior - log_q, dim=1)


@torch.no_grad()
def importance_log_px(model: nn.Module, x: torch.Tensor, n_samples: int = 200, batch_size: int = 100,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """`importance_log_likelihood` over images x (M, C, 28, 28) in batches, with K = n_samples
    samples from the encoder per image. Returns (M,) on the CPU."""
    validate_images(x, channels=(model.channels,))
    out = []
    for xb in x.split(batch_size):
        z = sample_posterior(model, xb, n_samples, generator)
        out.append(importance_log_likelihood(model, xb.reshape(len(xb), -1), z).cpu())
    return torch.cat(out)


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (k,) of the k highest scores, highest first."""
    if not 1 <= k <= len(scores):
        raise ValueError(f"k must be in 1..{len(scores)}, got {k}")
    return torch.topk(scores, k).indices


def roc_auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve of `scores` (N,) for detecting `positive` (N,) bool: the
    probability that a random positive outscores a random negative (ties count one half)."""
    scores = torch.as_tensor(scores, dtype=torch.float64)
    positive = torch.as_tensor(positive, dtype=torch.bool)
    if scores.shape != positive.shape or scores.dim() != 1:
        raise ValueError(f"scores and positive must be 1-D of equal length, got {tuple(scores.shape)} "
                         f"and {tuple(positive.shape)}")
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs at least one positive and one negative example")
    # average ranks (1-based) with ties sharing their mean rank (Mann-Whitney U)
    order = scores.argsort()
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    unique, inverse = torch.unique(sorted_scores, return_inverse=True)
    mean_rank = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, ranks[order])
    mean_rank /= torch.bincount(inverse, minlength=len(unique)).double()
    ranks[order] = mean_rank[inverse]
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))
