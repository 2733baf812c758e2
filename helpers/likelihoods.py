"""Decoder distributions p(x | z) over images.

A likelihood turns the decoder's raw output, `params` of shape (N, C * n_params, H, W), into a
distribution over images x of shape (N, C, H, W) in [0, 1]. Each gives `log_prob` summed over
pixels, `mean`, `sample`, and `n_params` (decoder output channels per image channel).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class Likelihood:
    name = "base"
    n_params = 1

    def config(self) -> dict:
        return {}

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(N, C*n_params, H, W), (N, C, H, W) -> (N,) log p(x | z), summed over pixels."""
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """(N, C*n_params, H, W) -> (N, C, H, W) expected image in [0, 1]."""
        raise NotImplementedError

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(N, C*n_params, H, W) -> (N, C, H, W) an image drawn from p(x | z)."""
        raise NotImplementedError

    def discrete_log_prob(self, params: torch.Tensor, x: torch.Tensor, levels: int = 256) -> torch.Tensor:
        """(N, C*n_params, H, W), (N, C, H, W) on the grid v / (levels-1) -> (N,) log P(x | z) of the
        *discrete* image: the probability of each pixel's grey level, so that models of grey MNIST
        with densities and with categoricals are compared on one scale (nats per image)."""
        raise NotImplementedError(f"{self.name} gives no distribution over grey levels")


def _level_edges(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval [lo, hi] of each pixel's grey level v = round(x (levels-1)): v +- 1/2 over levels-1."""
    v = torch.round(x * (levels - 1))
    return (v - 0.5) / (levels - 1), (v + 0.5) / (levels - 1)


class Bernoulli(Likelihood):
    """Independent Bernoulli pixels with logits l: log p(x|z) = sum_d x_d log s(l_d) + (1-x_d) log(1-s(l_d)),
    written stably as sum_d x_d l_d - softplus(l_d). On grey x in [0, 1] this is minus the
    cross-entropy between Bern(x) and Bern(s(l)) (the "re-interpreted data" objective)."""

    name = "bernoulli"

    def log_prob(self, params, x):
        return (x * params - F.softplus(params)).flatten(1).sum(1)

    def mean(self, params):
        return torch.sigmoid(params)

    def sample(self, params, generator=None):
        p = torch.sigmoid(params)
        return (torch.rand(p.shape, generator=generator, device=p.device) < p).to(p.dtype)


class Gaussian(Likelihood):
    """Independent Gaussian pixels: mean m = sigmoid(a) in (0, 1) and variance
    v = min_variance + softplus(b), so the variance stays positive and bounded away from 0
    (a density on pixels that are exactly 0 would otherwise grow without bound).
    log p(x|z) = -1/2 sum_d [log(2 pi v_d) + (x_d - m_d)^2 / v_d]."""

    name = "gaussian"
    n_params = 2

    def __init__(self, min_variance: float = 1e-3):
        if min_variance <= 0:
            raise ValueError(f"min_variance must be > 0, got {min_variance}")
        self.min_variance = min_variance

    def config(self):
        return {"min_variance": self.min_variance}

    def split(self, params):
        a, b = params.chunk(2, dim=1)
        return torch.sigmoid(a), self.min_variance + F.softplus(b)

    def log_prob(self, params, x):
        m, v = self.split(params)
        return (-0.5 * (torch.log(2 * math.pi * v) + (x - m) ** 2 / v)).flatten(1).sum(1)

    def mean(self, params):
        return self.split(params)[0]

    def sample(self, params, generator=None):
        m, v = self.split(params)
        eps = torch.randn(m.shape, generator=generator, device=m.device)
        return (m + v.sqrt() * eps).clamp(0.0, 1.0)  # clipped to [0, 1] for display

    def discrete_log_prob(self, params, x, levels=256):
        """Mass of the density on each grey level's interval; the lowest and highest levels take
        all the mass below 0 and above 1 (a "discretised Gaussian")."""
        m, v = (t.double() for t in self.split(params))
        lo, hi = _level_edges(x.double(), levels)
        std = v.sqrt()
        cdf_hi = torch.where(hi >= 1.0, torch.ones_like(hi), torch.special.ndtr((hi - m) / std))
        cdf_lo = torch.where(lo <= 0.0, torch.zeros_like(lo), torch.special.ndtr((lo - m) / std))
        return torch.log((cdf_hi - cdf_lo).clamp_min(1e-300)).flatten(1).sum(1).float()


class Beta(Likelihood):
    """Independent Beta pixels with alpha, beta = min_concentration + softplus(.) > 0.
    log p(x|z) = sum_d (alpha-1) log x + (beta-1) log(1-x) + lgamma(alpha+beta) - lgamma(alpha) - lgamma(beta).
    Pixels are clamped into [epsilon, 1 - epsilon] (epsilon = 1e-3, a quarter of one grey level)
    because a Beta density is 0 or infinite at exactly 0 and 1, where most MNIST pixels are."""

    name = "beta"
    n_params = 2

    def __init__(self, epsilon: float = 1e-3, min_concentration: float = 1e-2):
        if not 0 < epsilon < 0.5:
            raise ValueError(f"epsilon must be in (0, 0.5), got {epsilon}")
        self.epsilon, self.min_concentration = epsilon, min_concentration

    def config(self):
        return {"epsilon": self.epsilon, "min_concentration": self.min_concentration}

    def split(self, params):
        a, b = params.chunk(2, dim=1)
        return self.min_concentration + F.softplus(a), self.min_concentration + F.softplus(b)

    def log_prob(self, params, x):
        alpha, beta = self.split(params)
        x = x.clamp(self.epsilon, 1 - self.epsilon)
        lp = ((alpha - 1) * torch.log(x) + (beta - 1) * torch.log1p(-x)
              + torch.lgamma(alpha + beta) - torch.lgamma(alpha) - torch.lgamma(beta))
        return lp.flatten(1).sum(1)

    def mean(self, params):
        alpha, beta = self.split(params)
        return alpha / (alpha + beta)

    def sample(self, params, generator=None):
        alpha, beta = self.split(params)
        return torch.distributions.Beta(alpha, beta).sample()

    def discrete_log_prob(self, params, x, levels=256):
        """Mass of the Beta density on each grey level's interval (regularised incomplete beta)."""
        from scipy.special import betainc
        alpha, beta = (t.detach().double().cpu().numpy() for t in self.split(params))
        lo, hi = (t.clamp(0.0, 1.0).cpu().numpy() for t in _level_edges(x.double(), levels))
        mass = torch.from_numpy(betainc(alpha, beta, hi) - betainc(alpha, beta, lo))
        return torch.log(mass.clamp_min(1e-300)).flatten(1).sum(1).float().to(params.device)


def discretize(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Pixels in [0, 1] -> bin index 0..bins-1 (bin j holds [j/bins, (j+1)/bins), 1.0 in the last)."""
    return (x * bins).long().clamp_(0, bins - 1)


def bin_midpoints(index: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin index -> its midpoint (j + 1/2) / bins in (0, 1)."""
    return (index.float() + 0.5) / bins


class Categorical(Likelihood):
    """A categorical over `bins` grey levels per pixel (softmax of the decoder's `bins` logits).
    log p(x|z) = sum_d log softmax(l_d)[bin(x_d)]; images back in [0, 1] by the expected bin
    midpoint (`mean`) or a drawn bin's midpoint (`sample`)."""

    name = "categorical"

    def __init__(self, bins: int = 16):
        if bins < 2:
            raise ValueError(f"bins must be >= 2, got {bins}")
        self.bins = bins
        self.n_params = bins

    def config(self):
        return {"bins": self.bins}

    def log_probs(self, params):
        n, ck, h, w = params.shape
        return F.log_softmax(params.view(n, ck // self.bins, self.bins, h, w), dim=2)  # (N, C, k, H, W)

    def log_prob(self, params, x):
        lp = self.log_probs(params).gather(2, discretize(x, self.bins).unsqueeze(2))
        return lp.flatten(1).sum(1)

    def mean(self, params):
        mids = bin_midpoints(torch.arange(self.bins, device=params.device), self.bins).view(1, 1, -1, 1, 1)
        return (self.log_probs(params).exp() * mids).sum(2)

    def sample(self, params, generator=None):
        probs = self.log_probs(params).exp().movedim(2, -1)                 # (N, C, H, W, k)
        idx = torch.multinomial(probs.reshape(-1, self.bins), 1, generator=generator)
        return bin_midpoints(idx.view(probs.shape[:-1]), self.bins)

    def discrete_log_prob(self, params, x, levels=256):
        """A bin's probability spread evenly over the grey levels it holds."""
        if levels % self.bins:
            raise ValueError(f"levels ({levels}) must be a multiple of bins ({self.bins})")
        return self.log_prob(params, x) - x[0].numel() * math.log(levels // self.bins)


LIKELIHOODS: dict[str, type[Likelihood]] = {cls.name: cls for cls in (Bernoulli, Gaussian, Beta, Categorical)}


def make_likelihood(name: str, **kwargs) -> Likelihood:
    """The likelihood called `name` (bernoulli, gaussian, beta, categorical) with its options."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; expected one of {sorted(LIKELIHOODS)}")
    return LIKELIHOODS[name](**kwargs)
