"""Scores of models: ELBO, log-likelihood estimates, anomaly ranking, sample quality.

Images are (N, C, S, S) in [0, 1]; every per-image score is an (N,) tensor on the CPU. Every
estimate that draws randomness takes a `torch.Generator`; none touches the global RNG's seed.
Every place that needs p(z) asks the model's prior (`model.prior`), never assumes N(0, I).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm.auto import tqdm

from .data import validate_images
from .models import reparameterize
from .priors import diagonal_normal_log_prob


@torch.no_grad()
def batched(fn, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Apply fn((B, ...)) -> (B, ...) over x in batches without gradients; result on CPU."""
    return torch.cat([fn(x[i:i + batch_size]).cpu() for i in range(0, len(x), batch_size)])


def reconstruction_accuracy(model: nn.Module, verifier, x: torch.Tensor, labels: torch.Tensor,
                            tolerance: float | None = None) -> float:
    """Fraction of images x (N, C, 28, 28) whose reconstruction the verifier classifies as the
    original's label (N,) with confidence >= tolerance (default 0.8 mono, 0.5 stacked)."""
    return verifier.classify(batched(model.reconstruct, x)).accuracy(labels, tolerance)


def generation_quality(verifier, samples: torch.Tensor, tolerance: float | None = None) -> dict:
    """Generated images (N, C, 28, 28) classified once: {"predictability", "coverage"} at the
    tolerance (IT3030's protocol), and {"modes", "kl"}: classes hit and the KL of the argmax
    class histogram to uniform, every sample counted (VEEGAN's and PacGAN's protocol)."""
    result = verifier.classify(samples)
    return {"predictability": result.predictability(tolerance), "coverage": result.coverage(tolerance),
            "modes": result.modes(), "kl": result.kl_to_uniform()}


def anomaly_summary(scores: torch.Tensor, is_anomaly: torch.Tensor, k: int = 16) -> dict:
    """Higher score = more anomalous. {"top_k" indices, "top_k_fraction" of anomalies among the
    k highest, "roc_auc" of detecting anomalies by the score, "base_rate" of anomalies}."""
    top = top_k(scores, k)
    return {"top_k": top, "top_k_fraction": is_anomaly[top].float().mean().item(),
            "roc_auc": roc_auc(scores, is_anomaly), "base_rate": is_anomaly.float().mean().item()}


@torch.no_grad()
def elbo(model: nn.Module, x: torch.Tensor, batch_size: int = 2000, generator: torch.Generator | None = None,
         log_likelihood=None) -> torch.Tensor:
    """(N, C, S, S) -> (N,) one-sample ELBO of a VAE, z ~ q(z|x) drawn with `generator`.
    log_likelihood(params, x) -> (N,) replaces the decoder's log_prob (see `discrete_elbo`)."""
    return batched(lambda b: model.elbo_terms(b, generator, log_likelihood)["elbo"], x, batch_size)


def discrete_elbo(model: nn.Module, x: torch.Tensor, levels: int = 256, batch_size: int = 1000,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, C, S, S) grey images -> (N,) one-sample ELBO with log P(x | z) the probability of the
    discrete `levels`-level image (`Likelihood.discrete_log_prob`): comparable across decoders."""
    def log_likelihood(params, xb):
        return model.likelihood.discrete_log_prob(params, xb, levels)
    return elbo(model, x, batch_size, generator, log_likelihood)


@torch.no_grad()
def prior_log_px_bernoulli(model: nn.Module, x: torch.Tensor, n_samples: int = 10_000,
                           image_chunk: int = 2000, sample_chunk: int = 2500,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Monte-Carlo log p(x) = log (1/S) sum_s p(x | z_s), z_s ~ p(z) (the model's prior), for a
    Bernoulli-decoder VAE.

    x: (M, C, S, S). The S prior samples are decoded once; because
    log p(x | z) = x . l(z) - sum_d softplus(l_d(z)) is linear in x, all images are scored
    against all samples as a matrix product (M, D) @ (D, S), in chunks so that memory stays at
    (image_chunk x sample_chunk) scores; a running log-sum-exp combines the sample chunks.
    Returns (M,) in nats.
    """
    validate_images(x, channels=(model.channels,), size=model.image_size)
    if model.likelihood.name != "bernoulli":
        raise ValueError(f"prior_log_px_bernoulli needs a Bernoulli decoder, this VAE has {model.likelihood.name!r}")
    device = model.device
    flat = x.reshape(len(x), -1).to(device)
    z = model.prior.sample(n_samples, generator, device=device)
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
    """The same estimate as `prior_log_px_bernoulli`, the way IT3030 describes it: for each
    image, push the samples through the decoder and compute the cross-entropy. Slow; it is
    the reference the batched scorer is tested and benchmarked against. x: (M, C, S, S) -> (M,)."""
    validate_images(x, channels=(model.channels,), size=model.image_size)
    z = model.prior.sample(n_samples, generator, device=model.device)
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
    return reparameterize(mu, logvar, generator, n_samples)


@torch.no_grad()
def importance_log_likelihood(model: nn.Module, x: torch.Tensor, z: torch.Tensor,
                              decode_chunk: int = 2000) -> torch.Tensor:
    """Importance-sampled log p(x_i) with q(z | x_i) as proposal.

    x: (M, D) images (flattened), z: (M, K, L) samples z_ik ~ q(z | x_i). Returns (M,):
        log p(x_i) ~ log (1/K) sum_k exp(log p(x_i | z_ik) + log p(z_ik) - log q(z_ik | x_i)),
    computed with log-sum-exp; log p(z) is the model's prior. The M*K decodes run in chunks of
    `decode_chunk` codes, so memory stays bounded whatever M and K are.
    """
    m, k, latent = z.shape
    if x.dim() != 2 or len(x) != m:
        raise ValueError(f"x must be (M, D) with M = {m} (the first dimension of z), got {tuple(x.shape)}")
    images = x.reshape(m, *model.image_shape).to(z.device)
    mu, logvar = model.posterior(images)                                           # (M, L) each
    log_q = diagonal_normal_log_prob(z, mu[:, None], logvar[:, None])              # (M, K)
    flat_z = z.reshape(m * k, latent)
    log_prior = model.prior.log_prob(flat_z).view(m, k)                            # (M, K)
    rows = torch.arange(m * k, device=z.device) // k                               # row i*K + k is x_i
    log_lik = torch.cat([model.log_px_given_z(images[rows[s:s + decode_chunk]], flat_z[s:s + decode_chunk])
                         for s in range(0, m * k, decode_chunk)]).view(m, k)       # (M, K)
    return log_mean_exp(log_lik + log_prior - log_q, dim=1)


@torch.no_grad()
def importance_log_px(model: nn.Module, x: torch.Tensor, n_samples: int = 200, batch_size: int = 100,
                      generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """`importance_log_likelihood` over images x (M, C, S, S) in batches, with K = n_samples
    samples from the encoder per image (a progress bar with `progress`). Returns (M,) on the CPU."""
    validate_images(x, channels=(model.channels,), size=model.image_size)
    out = []
    for xb in tqdm(x.split(batch_size), desc=f"log p(x), K = {n_samples}", disable=not progress, leave=False):
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
    probability that a random positive outscores a random negative (ties count one half).
    Computed by `sklearn.metrics.roc_auc_score`."""
    scores = torch.as_tensor(scores, dtype=torch.float64)
    positive = torch.as_tensor(positive, dtype=torch.bool)
    if scores.shape != positive.shape or scores.dim() != 1:
        raise ValueError(f"scores and positive must be 1-D of equal length, got {tuple(scores.shape)} "
                         f"and {tuple(positive.shape)}")
    if positive.all() or not positive.any():
        raise ValueError("roc_auc needs at least one positive and one negative example")
    return float(roc_auc_score(positive.numpy(), scores.numpy()))
