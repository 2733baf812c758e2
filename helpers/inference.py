"""Inference without the encoder (2AMU20 Task 4) and image completion.

Each image x_i gets its own diagonal Gaussian q(z | Psi_i) = N(m_i, diag exp(s_i)) whose mean m_i and
log-variance s_i are free parameters. They are fitted by maximising the one-sample reparameterised
ELBO of the observed pixels,
    E_q[log p(x_obs | z)] - KL(q(z | Psi) || p(z)),
against a frozen decoder. Many images are fitted at once, as one (N, L) tensor of means and one of
log-variances, through the workbook's one training loop (`training.fit`, one optimisation step per
"epoch"); Adam works elementwise, so fitting them together is fitting each on its own.

Stopping criterion (`stopping_criterion`): after each step, the mean -ELBO over all the images; stop
when it has not improved by more than 0.01 nats for 50 steps in a row (or at the step cap), and keep
the best step's parameters. Averaged over many images the per-step value is smooth enough that 50
steps without a 0.01-nat gain means the optimisation has flattened out.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from . import settings
from .models import reparameterize
from .training import EarlyStopping, fit

MASKS = ("left", "right", "top", "bottom", "random")


def make_mask(kind: str, n: int = 1, size: int = 28, fraction: float = 0.5,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Observed pixels as a float mask (n, 1, size, size), 1 = observed, 0 = to complete.

    kind: "left" / "right" / "top" / "bottom" (that half observed) or "random" (each pixel observed
    with probability `fraction`, drawn with `generator`)."""
    if kind not in MASKS:
        raise ValueError(f"mask kind must be one of {MASKS}, got {kind!r}")
    if kind == "random":
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        return (settings.rand((n, 1, size, size), generator) < fraction).float()
    mask = torch.zeros(1, 1, size, size)
    half = size // 2
    region = {"left": (slice(None), slice(None, half)), "right": (slice(None), slice(half, None)),
              "top": (slice(None, half), slice(None)), "bottom": (slice(half, None), slice(None))}[kind]
    mask[0, 0][region] = 1.0
    return mask.expand(n, 1, size, size).clone()


def check_mask(mask: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The mask as (N, 1 or C, H, W) floats in {0, 1} for `images` (N, C, H, W); a clear error otherwise."""
    if not isinstance(mask, torch.Tensor) or mask.dim() != 4 or mask.shape[2:] != images.shape[2:] \
            or mask.shape[0] not in (1, len(images)) or mask.shape[1] not in (1, images.shape[1]):
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must have shape (N or 1, 1 or C, H, W) = ({len(images)}, 1, "
                         f"{images.shape[2]}, {images.shape[3]}) for images {tuple(images.shape)}, got {got}")
    if ((mask != 0) & (mask != 1)).any():
        raise ValueError("mask values must be 0 (missing) or 1 (observed)")
    return mask.float().expand(len(images), *mask.shape[1:])


@contextlib.contextmanager
def frozen(model: nn.Module):
    """Eval mode and no parameter gradients for `model` inside the block; both restored after.
    Its parameters and buffers (batch-norm statistics) are not changed by what runs inside."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval().requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)


class PerImagePosterior(nn.Module):
    """Psi for N images: `mean` (N, L) and `logvar` (N, L), the only parameters. The VAE is held
    outside the module tree (not a submodule), so `fit` neither trains nor switches it."""

    def __init__(self, vae: nn.Module, images: torch.Tensor, mask: torch.Tensor | None = None,
                 init: str = "prior"):
        super().__init__()
        if init not in ("prior", "encoder"):
            raise ValueError(f"init must be 'prior' or 'encoder', got {init!r}")
        vae._check(images)
        self._vae = (vae,)
        self.register_buffer("images", images.to(vae.device))
        self.register_buffer("mask", (check_mask(mask, images) if mask is not None
                                      else torch.ones(len(images), 1, *images.shape[2:])).to(vae.device))
        if init == "encoder":
            with torch.no_grad():
                mean, logvar = vae.posterior(images)
        else:
            mean = torch.zeros(len(images), vae.latent_dim, device=vae.device)
            logvar = torch.zeros_like(mean)
        self.mean, self.logvar = nn.Parameter(mean.clone()), nn.Parameter(logvar.clone())

    @property
    def vae(self) -> nn.Module:
        return self._vae[0]

    def elbo(self, index: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B,) image indices -> (B,) one-sample ELBO of their observed pixels under their own q."""
        mean, logvar = self.mean[index], self.logvar[index]
        z = reparameterize(mean, logvar, generator)
        rec = self.vae.likelihood.log_prob(self.vae.decoder(z), self.images[index], self.mask[index])
        return rec - self.vae.prior.kl(mean, logvar, z)


def _posterior_loss(model: PerImagePosterior, batch):
    elbo = model.elbo(batch[0])
    return {"loss": -elbo.mean()}


def stopping_criterion() -> EarlyStopping:
    """The criterion of encoder-free inference (see the module docstring)."""
    return EarlyStopping(patience=50, min_delta=0.01, monitor="train_loss")


def fit_posteriors(vae: nn.Module, images: torch.Tensor, mask: torch.Tensor | None = None, *,
                   max_steps: int = 2000, lr: float = 0.05, seed: int = 0, init: str = "prior",
                   progress: bool = True) -> tuple[PerImagePosterior, object]:
    """Fit q(z | Psi_i) to each image (N, C, H, W) (to its observed pixels under `mask`) against the
    frozen `vae`. Returns the fitted `PerImagePosterior` (mean, logvar (N, L)) and the fit History
    (one epoch per step; `history.epochs[-1]["epoch"]` is the number of steps taken)."""
    with frozen(vae):
        posterior = PerImagePosterior(vae, images, mask, init)
        history = fit(posterior, _posterior_loss, (torch.arange(len(images)),), epochs=max_steps,
                      batch_size=len(images), optimizer=torch.optim.Adam(posterior.parameters(), lr=lr),
                      early_stopping=stopping_criterion(), seed=seed, log_every=10**9,
                      progress="epochs" if progress else False, desc="fitting q(z | Psi)")
    return posterior, history


@torch.no_grad()
def encoder_free_elbo(posterior: PerImagePosterior, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N,) one-sample ELBO of each image's observed pixels under its fitted q (on the CPU)."""
    with frozen(posterior.vae):
        return posterior.elbo(torch.arange(len(posterior.mean), device=posterior.mean.device), generator).cpu()


@torch.no_grad()
def complete(posterior: PerImagePosterior, n_samples: int = 1, generator: torch.Generator | None = None,
             use_mean: bool = False) -> torch.Tensor:
    """Completions of the fitted images: z ~ q(z | Psi_i), decode, draw x' ~ p(x | z) (or take its
    mean with `use_mean`), and keep the observed pixels: (N, C, H, W), or (n_samples, N, C, H, W)."""
    vae, out = posterior.vae, []
    with frozen(vae):
        for _ in range(n_samples):
            z = reparameterize(posterior.mean, posterior.logvar, generator)
            mean, draw = vae.mean_and_sample(z, generator=generator)
            filled = mean if use_mean else draw
            out.append((posterior.mask * posterior.images + (1 - posterior.mask) * filled).cpu())
    return out[0] if n_samples == 1 else torch.stack(out)
