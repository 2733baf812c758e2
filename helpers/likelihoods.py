"""Decoder distributions p(x | z) over images.

A likelihood turns the decoder's raw output, `params` of shape (N, C * n_params, H, W), into a
distribution over images x of shape (N, C, H, W) in [0, 1]. Each gives `log_prob` summed over
pixels, `mean`, `sample`, and `n_params` (decoder output channels per image channel).

`discrete_log_prob` gives the probability of a discrete 256-level image. It works in float64 and
in log space on whichever side of the distribution a grey level lies, so that pixels far in either
tail get their true log-mass (which can be thousands of nats) rather than a floor at log(1e-300).
`sample` draws every random number from its `generator` (on the generator's device) and moves the
result to the parameters' device.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from . import settings


class Likelihood:
    name = "base"
    n_params = 1

    def config(self) -> dict:
        return {}

    def log_prob_pixels(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(N, C*n_params, H, W), (N, C, H, W) -> (N, C, H, W): log p(x_d | z) of every pixel."""
        raise NotImplementedError

    def log_prob(self, params: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C*n_params, H, W), (N, C, H, W) -> (N,) log p(x | z), summed over pixels; with a
        mask (broadcastable to (N, C, H, W), 1 = observed) only over the observed pixels, i.e.
        the log-likelihood of the observed part (the model is factorised over pixels)."""
        lp = self.log_prob_pixels(params, x)
        if mask is not None:
            lp = lp * mask
        return lp.flatten(1).sum(1)

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


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """Elementwise log(1 - exp(-x)) for x >= 0 (-inf at 0, 0 at +inf), accurate for small and large x:
    log(-expm1(-x)) below log 2, log1p(-exp(-x)) above (Maechler, 2012)."""
    minus_x = -x.clamp_min(0.0)
    return torch.where(minus_x > -math.log(2.0), torch.log(-torch.expm1(minus_x)),
                       torch.log1p(-torch.exp(minus_x)))


def _log_diff_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise log(exp(a) - exp(b)) for a >= b, without forming exp(a) or exp(b); b may be -inf."""
    return a + _log1mexp(a - b)


def _draw_device(params: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    """Where `sample` draws its random numbers: on the generator's device if one is given (a CPU
    generator cannot fill a CUDA tensor), else on the parameters'."""
    return generator.device if generator is not None else params.device


class Bernoulli(Likelihood):
    """Independent Bernoulli pixels with logits l: log p(x|z) = sum_d x_d log s(l_d) + (1-x_d) log(1-s(l_d)),
    written stably as sum_d x_d l_d - softplus(l_d). On grey x in [0, 1] this is minus the
    cross-entropy between Bern(x) and Bern(s(l)) (the "re-interpreted data" objective)."""

    name = "bernoulli"

    def log_prob_pixels(self, params, x):
        return x * params - F.softplus(params)

    def mean(self, params):
        return torch.sigmoid(params)

    def sample(self, params, generator=None):
        """(N, C, H, W) logits -> (N, C, H, W) 0/1 pixels drawn with torch.bernoulli."""
        p = torch.sigmoid(params)
        return torch.bernoulli(p.to(_draw_device(p, generator)), generator=generator).to(p.device)


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

    def log_prob_pixels(self, params, x):
        m, v = self.split(params)
        return -0.5 * (torch.log(2 * math.pi * v) + (x - m) ** 2 / v)

    def mean(self, params):
        return self.split(params)[0]

    def sample(self, params, generator=None):
        """(N, 2C, H, W) -> (N, C, H, W) m + sqrt(v) eps, eps ~ N(0, 1), clipped to [0, 1] for display."""
        m, v = self.split(params)
        eps = settings.randn(m.shape, generator, device=m.device, dtype=m.dtype)
        return (m + v.sqrt() * eps).clamp(0.0, 1.0)

    def discrete_log_prob(self, params, x, levels=256):
        """Mass of the density on each grey level's interval; the lowest and highest levels take
        all the mass below 0 and above 1 (a "discretised Gaussian").

        In float64 and log space: with a, b the standardised edges, a level below the mean gets
        log(Phi(b) - Phi(a)) = log_ndtr(b) + log(1 - exp(log_ndtr(a) - log_ndtr(b))), one above it the
        same with the survival function, Phi(-a) - Phi(-b), so neither tail rounds to 1 - 1 = 0.
        Should the difference still vanish (a standard deviation so wide that the level's edges
        coincide), the level gets log(density at its midpoint * width)."""
        m, v = self.split(params.double())
        std = v.sqrt()
        lo, hi = _level_edges(x.double(), levels)
        a = ((lo - m) / std).masked_fill_(lo <= 0.0, -math.inf)
        b = ((hi - m) / std).masked_fill_(hi >= 1.0, math.inf)
        upper = (a + b) > 0                             # the level's midpoint lies above the mean
        z_lo, z_hi = torch.where(upper, -b, a), torch.where(upper, -a, b)   # P(z_lo < Z < z_hi)
        log_mass = _log_diff_exp(torch.special.log_ndtr(z_hi), torch.special.log_ndtr(z_lo))
        lost = ~torch.isfinite(log_mass)                # (an infinite edge cannot underflow)
        if lost.any():
            lost &= torch.isfinite(z_lo) & torch.isfinite(z_hi)
            lo, hi, m, std = (t.expand_as(log_mass)[lost] for t in (lo, hi, m, std))
            z_mid = (lo + hi - 2 * m) / (2 * std)
            log_mass[lost] = -0.5 * (math.log(2 * math.pi) + z_mid ** 2) - torch.log(std) + torch.log(hi - lo)
        return log_mass.flatten(1).sum(1).float()


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

    def log_prob_pixels(self, params, x):
        alpha, beta = self.split(params)
        x = x.clamp(self.epsilon, 1 - self.epsilon)
        return ((alpha - 1) * torch.log(x) + (beta - 1) * torch.log1p(-x)
                + torch.lgamma(alpha + beta) - torch.lgamma(alpha) - torch.lgamma(beta))

    def mean(self, params):
        alpha, beta = self.split(params)
        return alpha / (alpha + beta)

    def sample(self, params, generator=None):
        """(N, 2C, H, W) -> (N, C, H, W) in [0, 1] by inversion: u ~ U(0, 1) from `generator`, then
        x = I^{-1}_u(alpha, beta) (scipy.special.betaincinv, on the CPU in float64). Exact, and unlike
        torch's Gamma-ratio sampler (which has no generator argument) reproducible from the generator."""
        from scipy.special import betaincinv
        alpha, beta = (t.detach().double().cpu().numpy() for t in self.split(params))
        u = settings.rand(alpha.shape, generator, device="cpu", dtype=torch.float64).numpy()
        x = np.clip(betaincinv(alpha, beta, u), 0.0, 1.0)
        return torch.from_numpy(x).to(device=params.device, dtype=params.dtype)

    def discrete_log_prob(self, params, x, levels=256):
        """Mass of the Beta density on each grey level's interval (regularised incomplete beta),
        the lowest and highest levels running from 0 and to 1.

        In float64: a level whose midpoint is below the mean alpha / (alpha + beta) gets
        I_hi(alpha, beta) - I_lo(alpha, beta), one above it the complementary form
        I_{1-lo}(beta, alpha) - I_{1-hi}(beta, alpha), so the subtraction never cancels to 1 - 1 = 0.
        Masses below 1e-280, where betainc itself underflows (to 0 from about 1e-308), are recomputed
        in log space (`_log_betainc`); a level that still comes out non-finite gets
        log(density at the interval midpoint * width)."""
        from scipy.special import betainc, betaln
        alpha, beta = (t.detach().double().cpu().numpy() for t in self.split(params))
        lo, hi = (t.clamp(0.0, 1.0).cpu().numpy() for t in _level_edges(x.double(), levels))
        upper = (lo + hi) / 2 > alpha / (alpha + beta)
        p, q = np.where(upper, beta, alpha), np.where(upper, alpha, beta)
        x1, x2 = np.where(upper, 1.0 - hi, lo), np.where(upper, 1.0 - lo, hi)   # mass = I_x2 - I_x1 (p, q)
        mass = betainc(p, q, x2) - betainc(p, q, x1)
        with np.errstate(divide="ignore"):
            log_mass = np.log(mass)
        tiny = ~(mass >= 1e-280)
        if tiny.any():
            p, q, x1, x2 = p[tiny], q[tiny], x1[tiny], x2[tiny]
            redo = _log_diff_exp(torch.from_numpy(_log_betainc(p, q, x2)),
                                 torch.from_numpy(_log_betainc(p, q, x1))).numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                mid, width = (x1 + x2) / 2, x2 - x1
                midpoint = ((p - 1) * np.log(mid) + (q - 1) * np.log1p(-mid) - betaln(p, q) + np.log(width))
            log_mass[tiny] = np.where(np.isfinite(redo), redo, midpoint)
        return torch.from_numpy(log_mass).flatten(1).sum(1).float().to(params.device)


def _log_betainc(a: np.ndarray, b: np.ndarray, x: np.ndarray, max_terms: int = 5000) -> np.ndarray:
    """Elementwise log I_x(a, b), the log regularised incomplete beta, for x in [0, 1) below about
    the mean a / (a + b) (-inf at x = 0), finite where I_x itself underflows float64. Arrays of one
    shape, float64. log I_x = a log x + b log(1-x) - log a - log B(a, b) + log f, with f the
    continued fraction of Numerical Recipes' `betacf` (modified Lentz), which converges fast for
    x < (a+1) / (a+b+2); entries that do not converge within `max_terms` come back NaN."""
    from scipy.special import betaln
    tiny = 1e-300

    def away_from_0(t):
        return np.where(np.abs(t) < tiny, tiny, t)

    c = np.ones_like(x)
    d = 1.0 / away_from_0(1.0 - (a + b) * x / (a + 1.0))
    f = d.copy()
    active = np.ones(x.shape, dtype=bool)
    with np.errstate(all="ignore"):           # entries that have converged may run off afterwards
        for m in range(1, max_terms + 1):
            for coef in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                         -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
                d = 1.0 / away_from_0(1.0 + coef * d)
                c = away_from_0(1.0 + coef / c)
                f = np.where(active, f * d * c, f)
            active &= np.abs(d * c - 1.0) > 1e-15
            if not active.any():
                break
        f[active] = np.nan
        return a * np.log(x) + b * np.log1p(-x) - np.log(a) - betaln(a, b) + np.log(f)


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

    def log_prob_pixels(self, params, x):
        return self.log_probs(params).gather(2, discretize(x, self.bins).unsqueeze(2)).squeeze(2)

    def mean(self, params):
        mids = bin_midpoints(torch.arange(self.bins, device=params.device), self.bins).view(1, 1, -1, 1, 1)
        return (self.log_probs(params).exp() * mids).sum(2)

    def sample(self, params, generator=None):
        """(N, C*bins, H, W) -> (N, C, H, W) midpoints of bins drawn with torch.multinomial."""
        probs = self.log_probs(params).exp().movedim(2, -1)                 # (N, C, H, W, k)
        rows = probs.reshape(-1, self.bins).to(_draw_device(params, generator))
        idx = torch.multinomial(rows, 1, generator=generator).to(params.device)
        return bin_midpoints(idx.view(probs.shape[:-1]), self.bins)

    def discrete_log_prob(self, params, x, levels=256):
        """A bin's probability spread evenly over the grey levels it holds."""
        if levels % self.bins:
            raise ValueError(f"levels ({levels}) must be a multiple of bins ({self.bins})")
        return self.log_prob(params, x) - x[0].numel() * math.log(levels // self.bins)


class UnitGaussian(Likelihood):
    """Gaussian pixels of a fixed standard deviation sigma around the mean m = sigmoid(a):
    p(x|z) = N(x; g(z), sigma^2 I) with g(z) = sigmoid(decoder(z)). With sigma = 1 (the default) this
    is IFT6135 Problem 3's N(x; g(z), I) on pixels in [0, 1]; sigma < 1 is the same model on pixels
    measured in units of sigma (x / sigma), whose density differs by the constant D log sigma.
    log p(x|z) = -1/2 sum_d [log(2 pi sigma^2) + (x_d - m_d)^2 / sigma^2]."""

    name = "unit_gaussian"

    def __init__(self, sigma: float = 1.0):
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
        self.sigma = float(sigma)

    def config(self):
        return {} if self.sigma == 1.0 else {"sigma": self.sigma}

    def log_prob_pixels(self, params, x):
        return -0.5 * (math.log(2 * math.pi * self.sigma ** 2) + ((x - torch.sigmoid(params)) / self.sigma) ** 2)

    def mean(self, params):
        return torch.sigmoid(params)

    def sample(self, params, generator=None):
        """(N, C, H, W) -> (N, C, H, W) m + sigma eps, eps ~ N(0, 1), clipped to [0, 1] for display."""
        m = torch.sigmoid(params)
        eps = settings.randn(m.shape, generator, device=m.device, dtype=m.dtype)
        return (m + self.sigma * eps).clamp(0.0, 1.0)


LIKELIHOODS: dict[str, type[Likelihood]] = {cls.name: cls for cls in (Bernoulli, Gaussian, Beta, Categorical,
                                                                      UnitGaussian)}


def make_likelihood(name: str, **kwargs) -> Likelihood:
    """The likelihood called `name` (bernoulli, gaussian, beta, categorical, unit_gaussian) with its options."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; expected one of {sorted(LIKELIHOODS)}")
    return LIKELIHOODS[name](**kwargs)
