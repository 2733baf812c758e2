"""Priors p(z) over a VAE's latent codes.

Every prior answers `log_prob(z)` (N, L) -> (N,), `sample(n, generator, device)` -> (n, L) and
`kl(mu, logvar, z)` -> (N,): KL(q(z|x) || p(z)) for a diagonal Gaussian q = N(mu, diag exp(logvar)).
Where a closed form exists (the standard normal) `kl` returns it and ignores z; otherwise it is
the one-sample Monte-Carlo estimate log q(z|x) - log p(z) at the reparameterised sample z.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import settings

LOG_2PI = math.log(2 * math.pi)


def diagonal_normal_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dimension: (..., L) -> (...)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(-1)


def standard_normal_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row: (N, L), (N, L) -> (N,)
    = 1/2 sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(-1)


class Prior(nn.Module):
    """Base class: a density over codes (N, latent_dim) that can be sampled."""

    analytic_kl = False

    def __init__(self, latent_dim: int):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = latent_dim

    def _device(self, device):
        if device is not None:
            return torch.device(device)
        first = next(iter(self.parameters()), None)
        return first.device if first is not None else torch.device("cpu")

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """(N, L) -> (N,) log p(z)."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """n codes z ~ p(z): (n, L) on `device` (default: the prior's own)."""
        raise NotImplementedError

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(N, L) x 3 -> (N,): Monte-Carlo KL(q || p) = log q(z | x) - log p(z) at the sample z."""
        return diagonal_normal_log_prob(z, mu, logvar) - self.log_prob(z)


class StandardNormal(Prior):
    """p(z) = N(0, I). No parameters, so VAEs trained before priors were pluggable load unchanged."""

    analytic_kl = True

    def log_prob(self, z):
        return -0.5 * (LOG_2PI + z ** 2).sum(-1)

    def sample(self, n, generator=None, device=None):
        return settings.randn((n, self.latent_dim), generator, device=self._device(device))

    def kl(self, mu, logvar, z=None):
        return standard_normal_kl(mu, logvar)


class DiagonalGaussian(Prior):
    """A learnable N(m, diag s^2) (m, log s are parameters, initialised to N(0, I)). Its KL goes
    through the Monte-Carlo path on purpose: the closed form is the tests' reference for it."""

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        self.mean = nn.Parameter(torch.zeros(latent_dim))
        self.log_std = nn.Parameter(torch.zeros(latent_dim))

    def log_prob(self, z):
        return diagonal_normal_log_prob(z, self.mean, 2 * self.log_std)

    def sample(self, n, generator=None, device=None):
        eps = settings.randn((n, self.latent_dim), generator, device=self._device(device))
        return self.mean + self.log_std.exp() * eps


class AffineCoupling(nn.Module):
    """One RealNVP step on (N, L): permute the coordinates, keep the first half a, and map the
    second half b -> b * exp(s(a)) + t(a). log|det J| = sum s(a). Starts as the identity."""

    def __init__(self, latent_dim: int, hidden: int, seed: int):
        super().__init__()
        perm = torch.randperm(latent_dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("perm", perm)
        self.register_buffer("inverse_perm", torch.argsort(perm))
        self.half = latent_dim // 2
        out = latent_dim - self.half
        self.net = nn.Sequential(nn.Linear(self.half, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2 * out))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(out))   # bounds s to (-scale, scale) through tanh

    def _shift_scale(self, a):
        s, t = self.net(a).chunk(2, dim=1)
        return self.scale * torch.tanh(s), t

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, L) -> (u (N, L), log|det du/dz| (N,))."""
        z = z[:, self.perm]
        a, b = z[:, :self.half], z[:, self.half:]
        s, t = self._shift_scale(a)
        return torch.cat([a, b * torch.exp(s) + t], dim=1), s.sum(1)

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        """(N, L) -> (N, L), the z with forward(z)[0] = u."""
        a, b = u[:, :self.half], u[:, self.half:]
        s, t = self._shift_scale(a)
        return torch.cat([a, (b - t) * torch.exp(-s)], dim=1)[:, self.inverse_perm]


class RealNVP(Prior):
    """A normalizing-flow prior: u = f(z) through `n_layers` affine couplings (a fixed random
    permutation before each), u ~ N(0, I). Change of variables:
        log p(z) = log N(f(z); 0, I) + log |det df/dz|,
    and sampling runs the couplings backwards from u ~ N(0, I)."""

    def __init__(self, latent_dim: int, n_layers: int = 4, hidden: int = 64):
        super().__init__(latent_dim)
        if latent_dim < 2 or n_layers < 1:
            raise ValueError(f"RealNVP needs latent_dim >= 2 and n_layers >= 1, got {latent_dim}, {n_layers}")
        self.layers = nn.ModuleList(AffineCoupling(latent_dim, hidden, seed=i) for i in range(n_layers))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, L) -> (u = f(z) (N, L), log|det df/dz| (N,))."""
        log_det = torch.zeros(len(z), device=z.device, dtype=z.dtype)
        for layer in self.layers:
            z, ld = layer(z)
            log_det = log_det + ld
        return z, log_det

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        """(N, L) -> (N, L) = f^{-1}(u)."""
        for layer in reversed(self.layers):
            u = layer.inverse(u)
        return u

    def log_prob(self, z):
        u, log_det = self(z)
        return -0.5 * (LOG_2PI + u ** 2).sum(-1) + log_det

    def sample(self, n, generator=None, device=None):
        return self.inverse(settings.randn((n, self.latent_dim), generator, device=self._device(device)))


PRIORS: dict[str, type[Prior]] = {"standard_normal": StandardNormal, "diagonal_gaussian": DiagonalGaussian,
                                  "realnvp": RealNVP}


def make_prior(name: str, latent_dim: int, **kwargs) -> Prior:
    """The prior called `name` (standard_normal, diagonal_gaussian, realnvp) over `latent_dim` codes."""
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; expected one of {sorted(PRIORS)}")
    return PRIORS[name](latent_dim, **kwargs)
