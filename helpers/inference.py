"""Inference without the encoder (2AMU20 Task 4) and image completion.

Each image x_i gets its own diagonal Gaussian q(z | Psi_i) = N(m_i, diag exp(s_i)) whose mean m_i and
log-variance s_i are free parameters. They are fitted by maximising the one-sample reparameterised
ELBO of the observed pixels,
    E_q[log p(x_obs | z)] - KL(q(z | Psi) || p(z)),
against a frozen decoder. Many images are fitted at once, as one (N, L) tensor of means and one of
log-variances, through the workbook's one training loop (`training.fit`, one optimisation step per
"epoch"); Adam works elementwise and each image's ELBO depends only on its own Psi_i, so fitting
them together is fitting each on its own, in one decoder pass per step.

Stopping criterion (`ConvergenceCriterion`, made by `stopping_criterion`). After each step the mean
one-sample -ELBO over the images is logged. A single step's value is noisy (one draw of z per image),
so the criterion compares running means: the mean over the last `window` steps against the mean over
the `window` steps before. When the relative improvement (old - new) / |old| falls below `rel_tol`,
the learning rate has stopped buying progress: it is multiplied by `drop` and two fresh windows are
collected at the new rate; after `drops` such reductions the next firing stops the fit. A step cap
(`max_steps`) bounds the time whatever happens. Why: with a fixed learning rate Adam's steps keep
the parameters jittering around the optimum at a distance set by the rate and the gradient noise
(at lr 0.1 the ELBO stalls about a nat below what a smaller rate reaches), while a small rate from
the start needs several times more steps; lowering the rate when progress stalls gets both. The
relative threshold makes the rule independent of the ELBO's scale (about 90 nats per image here).
The running mean over N images has a per-step noise that shrinks like 1/sqrt(N): with hundreds of
images the criterion sees the true trend, with one image it fires once the improvement per window
can no longer be told from the noise. The parameters of the last step are kept (the "best" step of
a noisy objective would be a selection on noise). Defaults (`fit_posteriors`): Adam from the prior
N(0, I) at lr 0.1, windows of 25 steps, rel_tol 3e-4 (0.03 nats per image and window at 90 nats),
two drops by 0.3 (lr 0.1 -> 0.03 -> 0.009), at most 1000 steps.
"""
from __future__ import annotations

import contextlib
import copy
import math

import torch
from torch import nn

from . import settings
from .models import reparameterize
from .training import EarlyStopping, fit

MASKS = ("left", "right", "top", "bottom", "random")

LR, WINDOW, REL_TOL, DROP, DROPS, MAX_STEPS = 0.1, 25, 3e-4, 0.3, 2, 1000   # the defaults of `fit_posteriors`


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
    outside the module tree (not a submodule), so `fit` neither trains nor switches it. The ELBO
    decodes with a frozen channels-last copy of the decoder (the same function, about 1.3x faster
    on a CPU); the VAE itself is only read."""

    def __init__(self, vae: nn.Module, images: torch.Tensor, mask: torch.Tensor | None = None,
                 init: str = "prior"):
        super().__init__()
        if init not in ("prior", "encoder"):
            raise ValueError(f"init must be 'prior' or 'encoder', got {init!r}")
        vae._check(images)
        decoder = copy.deepcopy(vae.decoder).eval().requires_grad_(False)
        self._held = (vae, decoder.to(memory_format=torch.channels_last))
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
        self.fit_info: dict = {}

    @property
    def vae(self) -> nn.Module:
        return self._held[0]

    def elbo(self, index: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B,) image indices -> (B,) one-sample ELBO of their observed pixels under their own q."""
        mean, logvar = self.mean[index], self.logvar[index]
        z = reparameterize(mean, logvar, generator)
        rec = self.vae.likelihood.log_prob(self._held[1](z), self.images[index], self.mask[index])
        return rec - self.vae.prior.kl(mean, logvar, z)


def _posterior_loss(model: PerImagePosterior, batch):
    return {"loss": -model.elbo(batch[0]).mean()}


class ConvergenceCriterion(EarlyStopping):
    """The stopping criterion of encoder-free inference (see the module docstring): running means
    of the monitored per-step loss over consecutive windows of `window` steps; a relative improvement
    below `rel_tol` multiplies `optimizer`'s learning rate by `drop` (at most `drops` times) and then
    stops. `drop_steps` lists the steps after which the rate was lowered; `stopped_at` the step at
    which it stopped (None when the step cap came first); `last_change` the latest relative change."""

    def __init__(self, optimizer: torch.optim.Optimizer, window: int = WINDOW, rel_tol: float = REL_TOL,
                 drop: float = DROP, drops: int = DROPS, monitor: str = "train_loss"):
        super().__init__(patience=1, monitor=monitor)
        if window < 1 or rel_tol <= 0 or not 0.0 < drop < 1.0 or drops < 0:
            raise ValueError(f"need window >= 1, rel_tol > 0, 0 < drop < 1, drops >= 0; got {window}, "
                             f"{rel_tol}, {drop}, {drops}")
        self.optimizer, self.window, self.rel_tol, self.drop, self.drops = optimizer, window, rel_tol, drop, drops
        self.values: list[float] = []
        self.drop_steps: list[int] = []
        self.stopped_at: int | None = None
        self.last_change: float | None = None

    def step(self, value: float, epoch: int | None = None) -> bool:
        self.calls += 1
        self.values.append(float(value))
        w = self.window
        if len(self.values) < 2 * w:
            return False
        old, new = sum(self.values[-2 * w:-w]) / w, sum(self.values[-w:]) / w
        self.last_change = (old - new) / max(abs(old), 1e-12)
        if not math.isfinite(new) or self.last_change >= self.rel_tol:
            return False
        if len(self.drop_steps) < self.drops:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.drop
            self.drop_steps.append(self.calls)
            self.values = []
            return False
        self.stopped_at = self.calls
        return True

    def state_dict(self) -> dict:
        return {**super().state_dict(), "values": list(self.values), "drop_steps": list(self.drop_steps),
                "stopped_at": self.stopped_at}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.values, self.drop_steps, self.stopped_at = list(state["values"]), list(state["drop_steps"]), state["stopped_at"]


def stopping_criterion(optimizer: torch.optim.Optimizer, **kwargs) -> ConvergenceCriterion:
    """The criterion of encoder-free inference for `optimizer` (see the module docstring)."""
    return ConvergenceCriterion(optimizer, **kwargs)


def fit_posteriors(vae: nn.Module, images: torch.Tensor, mask: torch.Tensor | None = None, *,
                   max_steps: int = MAX_STEPS, lr: float = LR, window: int = WINDOW, rel_tol: float = REL_TOL,
                   drop: float = DROP, drops: int = DROPS, seed: int = 0, init: str = "prior",
                   progress: bool = True, schedule: list[int] | None = None) -> tuple[PerImagePosterior, object]:
    """Fit q(z | Psi_i) to each image (N, C, H, W) (to its observed pixels under `mask` (N or 1, 1,
    H, W), 1 = observed) against the frozen `vae`, all N in one batched tensor: Adam at `lr` from
    the prior N(0, I) (or from the encoder's q(z | x) with init="encoder"), stopped by
    `ConvergenceCriterion(window, rel_tol, drop, drops)` or after `max_steps`.
    schedule: replay a run instead (e.g. another fit's fit_info["drop_steps"]): no criterion, exactly
    `max_steps` steps, the rate multiplied by `drop` after each step listed (MultiStepLR).
    Returns the fitted `PerImagePosterior` (mean, logvar (N, L); `fit_info` {"steps", "drop_steps",
    "stopped_at", "last_change"}) and the fit History (one record per step: "train_loss" is the mean
    one-sample -ELBO over the images)."""
    with frozen(vae):
        posterior = PerImagePosterior(vae, images, mask, init)
        optimizer = torch.optim.Adam(posterior.parameters(), lr=lr)
        stopping = stopping_criterion(optimizer, window=window, rel_tol=rel_tol, drop=drop, drops=drops)
        replay = None if schedule is None else (
            lambda opt, total: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(schedule), gamma=drop))
        history = fit(posterior, _posterior_loss, (torch.arange(len(images)),), epochs=max_steps,
                      batch_size=len(images), optimizer=optimizer, scheduler=replay,
                      early_stopping=stopping if schedule is None else None, seed=seed, log_every=10**9,
                      progress="epochs" if progress else False, desc="fitting q(z | Psi)")
    posterior.fit_info = {"steps": len(history.epochs),
                          "drop_steps": list(stopping.drop_steps if schedule is None else schedule),
                          "stopped_at": stopping.stopped_at, "last_change": stopping.last_change}
    return posterior, history


@torch.no_grad()
def encoder_free_elbo(posterior: PerImagePosterior, generator: torch.Generator | None = None,
                      draws: int = 1) -> torch.Tensor:
    """(N,) ELBO of each image's observed pixels under its fitted q: the mean of `draws` one-sample
    estimates (the same expectation, less noise), on the CPU."""
    with frozen(posterior.vae):
        index = torch.arange(len(posterior.mean), device=posterior.mean.device)
        return torch.stack([posterior.elbo(index, generator) for _ in range(draws)]).mean(0).cpu()


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
            out.append(fill_missing(posterior.images, posterior.mask, mean if use_mean else draw).cpu())
    return out[0] if n_samples == 1 else torch.stack(out)


def fill_missing(images: torch.Tensor, mask: torch.Tensor, fill) -> torch.Tensor:
    """Images (N, C, H, W) with their observed pixels (mask 1) kept and the missing ones (mask 0)
    taken from `fill`: a number, an image (1, C, H, W) such as the training mean, or (N, C, H, W)."""
    mask = check_mask(mask, images)
    fill = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    return mask * images + (1 - mask) * fill


@torch.no_grad()
def encoder_completion(vae: nn.Module, images: torch.Tensor, mask: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """The amortised baseline of completion: the encoder is fed the masked image (missing pixels
    black), z ~ q(z | masked x), x' ~ p(x | z) fills the missing pixels. (N, C, H, W) -> (N, C, H, W)."""
    with frozen(vae):
        mask = check_mask(mask, images).to(vae.device)
        images = images.to(vae.device)
        z = vae.sample_posterior_codes(images * mask, generator=generator)
        return fill_missing(images, mask, vae.mean_and_sample(z, generator=generator)[1]).cpu()
