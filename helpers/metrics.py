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

from . import settings
from .data import validate_images
from .models import reparameterize
from .priors import diagonal_normal_log_prob


def _check_positive(value, name: str) -> int:
    """A count that must be a whole number >= 1 (bool refused); returns it as int."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


@torch.no_grad()
def batched(fn, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Apply fn((B, ...)) -> (B, ...) over x in batches without gradients; result on CPU.
    An empty x or a batch_size below 1 is refused with a ValueError."""
    _check_positive(batch_size, "batch_size")
    if len(x) == 0:
        raise ValueError("got an empty batch of images (N = 0); pass at least one image")
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
    _check_positive(n_samples, "n_samples")
    if len(x) == 0:
        raise ValueError("got an empty batch of images (N = 0); pass at least one image")
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
                              decode_chunk: int = 2000, proposal: tuple[torch.Tensor, torch.Tensor] | None = None
                              ) -> torch.Tensor:
    """Importance-sampled log p(x_i) with q(z | x_i) as proposal.

    x: (M, D) images (flattened), z: (M, K, L) samples z_ik ~ q(z | x_i). Returns (M,):
        log p(x_i) ~ log (1/K) sum_k exp(log p(x_i | z_ik) + log p(z_ik) - log q(z_ik | x_i)),
    computed with log-sum-exp; log p(z) is the model's prior. The M*K decodes run in chunks of
    `decode_chunk` codes, so memory stays bounded whatever M and K are.
    proposal: (mean, log-variance), each (M, L), of another diagonal Gaussian q_i that drew z (e.g.
    one fitted per image without the encoder); default the encoder's q(z | x_i).
    """
    m, k, latent = z.shape
    if x.dim() != 2 or len(x) != m:
        raise ValueError(f"x must be (M, D) with M = {m} (the first dimension of z), got {tuple(x.shape)}")
    images = x.reshape(m, *model.image_shape).to(z.device)
    mu, logvar = model.posterior(images) if proposal is None else (p.to(z.device) for p in proposal)   # (M, L) each
    if mu.shape != (m, latent) or logvar.shape != (m, latent):
        raise ValueError(f"the proposal's mean and log-variance must be (M, L) = ({m}, {latent}), "
                         f"got {tuple(mu.shape)} and {tuple(logvar.shape)}")
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
    _check_positive(n_samples, "n_samples")
    _check_positive(batch_size, "batch_size")
    if len(x) == 0:
        raise ValueError("got an empty batch of images (N = 0); pass at least one image")
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


# --- sample-quality tables, Monte-Carlo checks and mode balance (notebooks 01, 02 and 03) ---------

from typing import NamedTuple  # noqa: E402  (this block is appended; the imports above are shared)

def proportion_se(p: float, n: int) -> float:
    """Standard error sqrt(p (1 - p) / n) of a fraction p measured on n independent items."""
    if n < 1 or not 0.0 <= p <= 1.0:
        raise ValueError(f"need a fraction p in [0, 1] and n >= 1, got p={p!r}, n={n!r}")
    return math.sqrt(p * (1.0 - p) / n)


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """(N,) -> (mean, standard error of the mean, std / sqrt(N)); N >= 2."""
    values = torch.as_tensor(values, dtype=torch.float64).flatten()
    if len(values) < 2:
        raise ValueError(f"need at least 2 values for a standard error, got {len(values)}")
    return values.mean().item(), (values.std() / math.sqrt(len(values))).item()


class Agreement(NamedTuple):
    """A live recomputation set against a stored figure: they agree when they differ by at most
    `limit` standard errors `se` of their difference. Printing it gives one readable line."""
    name: str
    live: float
    stored: float
    se: float
    limit: float = 3.0
    digits: int = 3

    @property
    def ok(self) -> bool:
        return abs(self.live - self.stored) <= self.limit * self.se

    def __str__(self) -> str:
        d = self.digits
        verdict = "agrees" if self.ok else "DOES NOT AGREE"
        return (f"{self.name}: live {self.live:.{d}f}, stored {self.stored:.{d}f}, difference "
                f"{self.live - self.stored:+.{d}f} within {self.limit:g} SE = {self.limit * self.se:.{d}f}: {verdict}")


def check_agreement(name: str, live: float, stored: float, se: float, limit: float = 3.0,
                    digits: int = 3) -> Agreement:
    """An `Agreement` of a live number with a stored one, given the standard error `se` of their
    difference (for independent estimates, sqrt(se_live^2 + se_stored^2))."""
    if se < 0 or limit <= 0:
        raise ValueError(f"se must be >= 0 and limit > 0, got se={se!r}, limit={limit!r}")
    return Agreement(name, float(live), float(stored), float(se), float(limit), digits)


class Reproduction(NamedTuple):
    """A stored result recomputed exactly (the same images, seed and settings): `ok` when the
    live result equals the stored one. Printing it gives one readable line."""
    name: str
    ok: bool

    def __str__(self) -> str:
        return f"{self.name}: {'reproduced' if self.ok else 'NOT REPRODUCED'}"


def confirm(*checks) -> bool:
    """Print each live-vs-stored check (`Agreement`, `SubsetCheck`, `Reproduction`) on one line and
    return whether all hold. When one fails, stop with an AssertionError, except under
    DGM_SMOKE=1, where the models may be two-batch retrainings whose numbers are not the shipped
    ones: then a note says so and the notebook goes on."""
    for check in checks:
        print(check)
    failed = [c for c in checks if not c.ok]
    if failed and not settings.smoke_mode():
        raise AssertionError(f"{len(failed)} of {len(checks)} live recomputations disagree with the stored "
                             f"evaluation (see the lines above); if the checkpoint was retrained, refresh its "
                             f"evaluation with `python -m helpers evaluate NAME`")
    if failed:
        print("smoke run: these live numbers come from a smoke-size run and are not expected to agree")
    return not failed


def live_accuracy_check(name: str, model: nn.Module, verifier, x: torch.Tensor, labels: torch.Tensor, stored: dict,
                        m: int, tolerance: float) -> Agreement:
    """The reconstruction accuracy of the first m images of x (N, C, 28, 28) with labels (N,),
    recomputed live and set against a stored accuracy over stored["n"] images (stored["accuracy"]),
    within the standard error of an m-image subset of them (`subset_difference_se`); m is at most n
    (a smoke-size evaluation stores fewer images)."""
    p, n = stored["accuracy"], stored["n"]
    m = min(m, n)
    live = reconstruction_accuracy(model, verifier, x[:m], labels[:m], tolerance=tolerance)
    return check_agreement(f"{name}: accuracy of the first {m:,} test images vs the stored {n:,}", live, p,
                           subset_difference_se(math.sqrt(p * (1 - p)), m, n))


def subset_difference_se(sd: float, m: int, n: int) -> float:
    """Standard error of (mean of the first m of n values) - (mean of all n), for values with
    standard deviation sd: sd * sqrt(1/m - 1/n). It is what a live recomputation on a subset is
    checked against when the stored figure is the mean over all n."""
    if not 1 <= m <= n or sd < 0:
        raise ValueError(f"need 1 <= m <= n and sd >= 0, got m={m}, n={n}, sd={sd}")
    return sd * math.sqrt(1.0 / m - 1.0 / n)


@torch.no_grad()
def draw_samples(model: nn.Module, n: int, generator: torch.Generator, chunk_size: int = 2560,
                 progress: bool = False, **kwargs) -> torch.Tensor:
    """n images (n, C, S, S) on the CPU from `model.sample(size, generator=generator, **kwargs)`,
    drawn in chunks of `chunk_size` one after another from the one generator (memory stays at one
    chunk's activations), with a progress bar when `progress`."""
    if n < 1 or chunk_size < 1:
        raise ValueError(f"n and chunk_size must be >= 1, got {n}, {chunk_size}")
    sizes = [min(chunk_size, n - start) for start in range(0, n, chunk_size)]
    return torch.cat([model.sample(size, generator=generator, **kwargs).cpu()
                      for size in tqdm(sizes, desc=f"sampling {n:,} images", disable=not progress, leave=False)])


def classify_in_chunks(verifier, images: torch.Tensor, chunk_size: int = 4096, desc: str = "classifying"):
    """`verifier.classify` over images (N, C, 28, 28) in chunks, with a progress bar: the same
    `Classification` as one call, for sets that take longer than a few seconds."""
    parts = [verifier.classify(chunk) for chunk in tqdm(images.split(chunk_size), desc=desc, leave=False)]
    if not parts:
        raise ValueError("no images to classify")
    first = parts[0]
    return type(first)(torch.cat([p.digits for p in parts]), torch.cat([p.digit_confidence for p in parts]))


def digit_frequencies(digits: torch.Tensor) -> torch.Tensor:
    """(N, C) digits 0..9 of N images with C channels -> (C, 10) float64: the fraction of the N
    images whose channel c shows digit d."""
    digits = torch.as_tensor(digits)
    if digits.dim() != 2 or len(digits) == 0 or digits.min() < 0 or digits.max() > 9:
        raise ValueError(f"digits must be a non-empty (N, C) tensor of values 0..9, got shape {tuple(digits.shape)}")
    counts = torch.stack([torch.bincount(digits[:, c], minlength=10) for c in range(digits.shape[1])])
    return counts.double() / len(digits)


def _histogram_kl(labels: torch.Tensor, n_classes: int) -> float:
    """KL(histogram of labels (N,) || uniform over n_classes), nats (0 log 0 = 0)."""
    p = torch.bincount(labels, minlength=n_classes).double() / len(labels)
    nz = p > 0
    return float((p[nz] * torch.log(p[nz] * n_classes)).sum())


def independent_channels_kl(frequencies: torch.Tensor, n: int, draws: int = 20,
                            generator: torch.Generator | None = None) -> tuple[float, float]:
    """What the class histogram's KL to uniform would be if the channels were independent.

    frequencies: (C, 10) per-channel digit distributions (rows sum to 1). Draws `draws` sets of n
    images whose channel c shows digit d with probability frequencies[c, d], independently across
    channels; returns the mean and standard deviation over the draws of KL(class histogram ||
    uniform over 10^C). It includes the finite-sample excess (about (10^C - 1) / (2 n) when every
    class is common) that a histogram of n draws has even from a perfectly balanced generator."""
    frequencies = torch.as_tensor(frequencies, dtype=torch.float64)
    if frequencies.dim() != 2 or frequencies.shape[1] != 10 or not torch.allclose(frequencies.sum(1), torch.ones(len(frequencies), dtype=torch.float64)):
        raise ValueError(f"frequencies must be (C, 10) with rows summing to 1, got shape {tuple(frequencies.shape)}")
    if n < 1 or draws < 2:
        raise ValueError(f"need n >= 1 and draws >= 2, got n={n}, draws={draws}")
    c = len(frequencies)
    place = 10 ** torch.arange(c)
    kls = []
    for _ in range(draws):
        digits = torch.stack([torch.multinomial(frequencies[k], n, replacement=True, generator=generator)
                              for k in range(c)], 1)                                   # (n, C)
        kls.append(_histogram_kl((digits * place).sum(1), 10 ** c))
    kls = torch.tensor(kls, dtype=torch.float64)
    return kls.mean().item(), kls.std().item()


def kl_decomposition(summary: dict, draws: int = 20, seed: int = 0) -> dict:
    """Where a stacked generator's KL to uniform comes from, from its stored `generation_summary`
    (digit_frequencies (3, 10), channel_kl, kl, n): the per-channel KLs and their sum, the KL that
    independent channels with exactly these digit frequencies would give at the same n (mean and
    sd over `draws` simulated histograms, `independent_channels_kl`, seeded), and the rest of the
    measured KL, "dependence" (digits that co-occur more or less often than chance)."""
    freqs = torch.tensor(summary["digit_frequencies"], dtype=torch.float64)
    expected, spread = independent_channels_kl(freqs / freqs.sum(1, keepdim=True), summary["n"], draws=draws,
                                               generator=torch.Generator().manual_seed(seed))
    return {"channel_kl": list(summary["channel_kl"]), "channel_sum": float(sum(summary["channel_kl"])),
            "independent": expected, "independent_sd": spread, "measured": summary["kl"],
            "dependence": summary["kl"] - expected}


def classified_balance(result, draws: int = 20, seed: int = 0) -> dict:
    """`kl_decomposition` of a live `Classification` of stacked images (N, 3 channels): per-channel
    digit KLs to uniform, the measured KL over 1000 classes, the KL independent channels with these
    digit frequencies would give at the same N, and the most and least frequent digit averaged over
    the channels ({"most": (digit, frequency), "least": ...})."""
    freq = digit_frequencies(result.digits)                                       # (C, 10)
    channel_kl = (freq * torch.log(10 * freq.clamp_min(1e-12))).sum(1).tolist()
    out = kl_decomposition({"digit_frequencies": freq.tolist(), "channel_kl": channel_kl,
                            "kl": result.kl_to_uniform(), "n": len(result)}, draws=draws, seed=seed)
    average = freq.mean(0)
    out["most"] = (int(average.argmax()), average.max().item())
    out["least"] = (int(average.argmin()), average.min().item())
    return out


def estimator_spread(model: nn.Module, x: torch.Tensor, draws: int = 200,
                     generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The noise of a single-draw ELBO estimate per image: for each image of x (M, C, S, S), the
    standard deviation over `draws` draws of each of `elbo_estimators`' two estimators, on the same
    draws. Returns {estimator: (M,)}."""
    _check_positive(draws, "draws")
    out: dict[str, list[float]] = {}
    for i in range(len(x)):
        values = elbo_estimators(model, x[i:i + 1].expand(draws, -1, -1, -1), generator=generator)
        for key, v in values.items():
            out.setdefault(key, []).append(v.std().item())
    return {key: torch.tensor(v) for key, v in out.items()}


PUBLISHED_STACKED_MODES = (("DCGAN (published)", 99, 3.40), ("VEEGAN (published)", 150, 2.95),
                           ("PacGAN2 (published)", 1000, 0.06))
"""stackedMNIST (name, modes, KL to uniform) as published, 26,000 samples scored by each paper's own
classifier: DCGAN and VEEGAN from Srivastava et al. (NeurIPS 2017, Table 2), PacGAN2 from Lin et al.
(NeurIPS 2018, Table 2). Reference points, not a like-for-like comparison."""


def top_confusions(confusion: torch.Tensor, k: int = 3) -> list[tuple[int, int, int]]:
    """The k largest off-diagonal cells of a confusion matrix (rows true, columns predicted) as
    (true class, predicted class, count), largest first; cells with a count of 0 are left out."""
    errors = torch.as_tensor(confusion).clone().long()
    errors.fill_diagonal_(0)
    counts, flat = errors.flatten().sort(descending=True)
    n = errors.shape[1]
    return [(int(i) // n, int(i) % n, int(c)) for c, i in zip(counts[:k], flat[:k]) if c > 0]


def format_optional(value, spec: str) -> str:
    """`format(value, spec)`, or "-" right-aligned to the spec's width when value is None (e.g. a
    KL among confident images when no image is confident)."""
    if value is None:
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return "-".rjust(int(width) if width else 1)
    return format(value, spec)


def generation_summary(result, tolerance: float) -> dict:
    """Every number of the sample-quality table from one `verification.Classification` of n
    generated (or real) images, JSON-ready:
    n; at the sheet's `tolerance` (IT3030): predictability, its standard error, coverage, and the
    mode count and KL among confident images only (modes_at_tolerance, kl_at_tolerance); with every
    image counted by its argmax class (VEEGAN's and PacGAN's protocol): modes and kl; and the
    per-channel digit frequencies (C, 10) with each channel's KL to uniform over 10 digits.
    kl_at_tolerance is None when no image reaches the tolerance (an empty histogram has no KL)."""
    n = len(result)
    p = result.predictability(tolerance)
    freqs = digit_frequencies(result.digits)
    nz = freqs > 0
    channel_kl = torch.where(nz, freqs * torch.log(torch.where(nz, freqs, torch.ones_like(freqs)) * 10), 0.0).sum(1)
    return {"n": n, "tolerance": tolerance, "predictability": p, "predictability_se": proportion_se(p, n),
            "coverage": result.coverage(tolerance),
            "modes_at_tolerance": result.modes(tolerance),
            "kl_at_tolerance": None if result.modes(tolerance) == 0 else result.kl_to_uniform(tolerance),
            "modes": result.modes(), "kl": result.kl_to_uniform(),
            "digit_frequencies": [[round(f, 5) for f in row] for row in freqs.tolist()],
            "channel_kl": [round(k, 5) for k in channel_kl.tolist()]}


def anomaly_record(scores: torch.Tensor, is_anomaly: torch.Tensor, k: int = 16) -> dict:
    """`anomaly_summary` in JSON-ready form (higher score = more anomalous): roc_auc,
    top_k_fraction, base_rate, the indices of the k highest scores (highest first) and those scores,
    and the mean score with its standard error."""
    s = anomaly_summary(scores, is_anomaly, k)
    top = s["top_k"]
    mean, se = mean_and_se(scores)
    return {"roc_auc": s["roc_auc"], "top_k_fraction": s["top_k_fraction"], "base_rate": s["base_rate"],
            "top_k": top.tolist(), "top_k_scores": [round(float(v), 3) for v in scores[top]],
            "mean_score": mean, "mean_score_se": se, "n": len(scores)}


@torch.no_grad()
def elbo_estimators(model: nn.Module, x: torch.Tensor, generator: torch.Generator | None = None,
                    batch_size: int = 1000) -> dict[str, torch.Tensor]:
    """The two one-sample Monte-Carlo estimators of the ELBO of Kingma & Welling (2013, section
    2.3), on the same reparameterised draw z = mu + sigma * eps, eps ~ N(0, I), per image of x (N, C, S, S):
    "both_terms_mc": log p(x|z) + log p(z) - log q(z|x), every term estimated (their estimator A);
    "closed_form_kl": log p(x|z) - KL(q(z|x) || p(z)) with the prior's KL (estimator B, the training loss);
    "reconstruction": log p(x|z). Each (N,) on the CPU."""
    out = {"both_terms_mc": [], "closed_form_kl": [], "reconstruction": []}
    for xb in x.split(batch_size):
        mu, logvar = model.posterior(xb)
        z = reparameterize(mu, logvar, generator)
        rec = model.log_px_given_z(xb, z)
        out["both_terms_mc"].append((rec + model.prior.log_prob(z) - diagonal_normal_log_prob(z, mu, logvar)).cpu())
        out["closed_form_kl"].append((rec - model.prior.kl(mu, logvar, z)).cpu())
        out["reconstruction"].append(rec.cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def live_sample_check(verifier, model: nn.Module, n: int, stored: dict, generator: torch.Generator, name: str,
                      **sample_kwargs) -> tuple[Agreement, torch.Tensor]:
    """Draw n fresh samples (`draw_samples`, with `generator` and `sample_kwargs`), classify them and
    set their predictability against a stored `generation_summary` of the same generator (which
    names its tolerance, n and standard error). The two draws are independent, so the standard
    error of the difference is sqrt(se_live^2 + se_stored^2). Returns the `Agreement` and the
    samples (n, C, 28, 28), e.g. for a figure."""
    samples = draw_samples(model, n, generator, **sample_kwargs)
    p = verifier.classify(samples).predictability(stored["tolerance"])
    se = math.sqrt(proportion_se(p, n) ** 2 + stored["predictability_se"] ** 2)
    return check_agreement(f"{name}: predictability of {n:,} fresh samples vs the stored {stored['n']:,}",
                           p, stored["predictability"], se), samples


def log_px_estimates(model: nn.Module, x: torch.Tensor, prior_samples: int, importance_samples: int, seed: int,
                     channelwise: bool = False, progress: bool = False, batch_size: int = 100) -> dict[str, torch.Tensor]:
    """Three estimates of log p(x) of a Bernoulli VAE for images x (N, C, S, S), each (N,) in nats,
    each drawn from its own `torch.Generator().manual_seed(seed)`:
    "elbo" (one draw), "prior_mc" (`prior_log_px_bernoulli` with N = prior_samples) and
    "importance" (`importance_log_px` with K = importance_samples).
    channelwise: x is stacked (N, 3, S, S) and `model` a mono VAE; each channel is scored on its own
    and the three are added (log p of independent channels).
    The ELBO and importance draws are made `batch_size` images at a time, so the values of the
    first m images of x, for m a multiple of batch_size (of m / 3 with channelwise), are exactly
    those the whole of x gives them: a subset can be recomputed and compared."""
    images = x.reshape(-1, 1, *x.shape[2:]) if channelwise else x
    gen = lambda: torch.Generator().manual_seed(seed)          # noqa: E731
    values = {"elbo": elbo(model, images, batch_size=batch_size, generator=gen()),
              "prior_mc": prior_log_px_bernoulli(model, images, prior_samples, generator=gen()),
              "importance": importance_log_px(model, images, importance_samples, batch_size=batch_size,
                                              generator=gen(), progress=progress)}
    return {k: v.reshape(len(x), -1).sum(1) for k, v in values.items()} if channelwise else values


class SubsetCheck(NamedTuple):
    """A recomputation of the first m images of a stored evaluation: `agreement` sets the live mean
    against the stored mean over all images (within the standard error of an m-image subset), and
    the live mean must also reproduce `stored_subset`, the stored mean over the same m images,
    within `tolerance` (float noise only)."""
    agreement: Agreement
    stored_subset: float
    tolerance: float

    @property
    def reproduced(self) -> bool:
        return abs(self.agreement.live - self.stored_subset) <= self.tolerance

    @property
    def ok(self) -> bool:
        return self.reproduced and self.agreement.ok

    def __str__(self) -> str:
        word = "reproduces" if self.reproduced else "DOES NOT REPRODUCE"
        return f"{self.agreement}; {word} the stored mean of the same images, {self.stored_subset:.2f}"


def subset_check(name: str, live: torch.Tensor, stored: dict, n_total: int, tolerance: float,
                 digits: int = 2) -> SubsetCheck:
    """A live recomputation of the first m = len(live) values of a stored summary {"mean", "sd",
    "live_mean"} over n_total values (e.g. `recipes.value_summary`): the live mean against the
    stored mean within the standard error of an m-value subset, and against the stored mean of the
    same m values within `tolerance`."""
    m = len(live)
    agreement = check_agreement(f"{name}: first {m}", live.double().mean().item(), stored["mean"],
                                subset_difference_se(stored["sd"], m, n_total), digits=digits)
    return SubsetCheck(agreement, stored["live_mean"], tolerance)


def log_px_live_checks(model: nn.Module, x: torch.Tensor, stored: dict, channelwise: bool = False,
                       tolerance: float = 0.05) -> list[SubsetCheck]:
    """Recompute `log_px_estimates` of the first stored["live_images"] images of x with the stored
    settings (prior_samples, importance_samples, seed, batch_size) and check each mean against a stored
    evaluation made by `recipes` (per estimate: mean_log_px, sd_log_px, live_mean_log_px, n)."""
    m = stored["live_images"]
    live = log_px_estimates(model, x[:m], stored["prior_samples"], stored["importance_samples"], stored["seed"],
                            channelwise=channelwise, progress=True, batch_size=stored["batch_size"])
    checks = []
    for key, values in live.items():
        s = stored[key]
        agreement = check_agreement(f"{key}: mean log p(x) of the first {m:,} images vs the stored {s['n']:,}",
                                    values.double().mean().item(), s["mean_log_px"],
                                    subset_difference_se(s["sd_log_px"], m, s["n"]), digits=2)
        checks.append(SubsetCheck(agreement, s["live_mean_log_px"], tolerance))
    return checks


# --- samples written for the FID command (the distance itself: `frechet`) ---------------------------

@torch.no_grad()
def write_samples(model: nn.Module, n: int, directory, generator: torch.Generator, overwrite: bool = False,
                  chunk_size: int = 2560, **kwargs):
    """Draw n samples (n, C, S, S) of `model` with `generator` (`draw_samples`) and write them as
    PNGs into `directory` atomically (`png.write_png_directory`). Returns the list of paths."""
    from .png import write_png_directory
    return write_png_directory(draw_samples(model, n, generator, chunk_size=chunk_size, **kwargs), directory,
                               overwrite=overwrite)
