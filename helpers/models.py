"""Generative models with one shared interface, and the explicit table of buildable architectures.

Every model here answers `encode(x)`, `decode(z)`, `reconstruct(x)` and, for generators,
`sample(n, generator=None)`: images are (N, C, S, S) in [0, 1] (decoder means, S = 28 or 32),
codes are (N, latent_dim). `loss(x)` gives the training objective (a dict with "loss" and logged
terms) for `fit`; it is the per-step path and does not re-check its input (`fit` checks the data
once, through `check_batch`). The public methods check what they are given.
"""
from __future__ import annotations

import torch
from torch import nn

from . import settings
from .data import validate_images
from .likelihoods import make_likelihood
from .nets import (DECODERS, ENCODERS, ConvDecoder, ConvEncoder, DCGANDiscriminator, DCGANGenerator,
                   DigitClassifier)
from .priors import make_prior


def model_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """The `fit` loss of any model with a `loss(x)` method: batch = (images, ...)."""
    return model.loss(batch[0])


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
                   n_samples: int | None = None) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I): (N, L), (N, L) -> (N, L), or (N, K, L) with K = n_samples.
    The one reparameterisation of the workbook (gradients flow to mu and logvar)."""
    shape = mu.shape if n_samples is None else (mu.shape[0], n_samples, mu.shape[1])
    eps = settings.randn(shape, generator, device=mu.device, dtype=mu.dtype)
    std = torch.exp(0.5 * logvar)
    if n_samples is not None:
        mu, std = mu[:, None], std[:, None]
    return mu + std * eps


def check_codes(z: torch.Tensor, latent_dim: int) -> torch.Tensor:
    """Check that codes z are a finite float32 tensor (N, latent_dim); returns z unchanged."""
    if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != latent_dim:
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"codes must have shape (N, {latent_dim}), got {got}")
    if z.dtype != torch.float32:
        raise TypeError(f"codes must be float32, got {z.dtype}; convert with z.float()")
    if z.numel() and not torch.isfinite(z).all():
        raise ValueError(f"codes hold NaN or infinite values (in {(~torch.isfinite(z)).any(1).sum().item()} "
                         f"of {len(z)} codes)")
    return z


def check_count(n, what: str = "n") -> int:
    """A sample count: a non-negative int (bool refused); returns it. ValueError/TypeError otherwise."""
    if isinstance(n, bool) or not isinstance(n, (int,)) and not (isinstance(n, torch.Tensor) and n.dim() == 0
                                                               and not n.is_floating_point()):
        raise TypeError(f"{what} must be a whole number of images, got {n!r} ({type(n).__name__})")
    n = int(n)
    if n < 0:
        raise ValueError(f"{what} must be >= 0, got {n}")
    return n


class _ImageModel(nn.Module):
    channels: int
    latent_dim: int
    image_size: int = 28

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        return validate_images(x, channels=(self.channels,), size=self.image_size)

    def _check_codes(self, z: torch.Tensor) -> torch.Tensor:
        return check_codes(z, self.latent_dim)

    def check_batch(self, data: tuple[torch.Tensor, ...]) -> None:
        """Check training data (images, ...) once before `fit` runs the unchecked `loss`."""
        self._check(data[0])

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) -> (N, C, S, S): decode(encode(x))."""
        return self.decode(self.encode(x))


class AutoEncoder(_ImageModel):
    """Deterministic conv auto-encoder trained with binary cross-entropy.

    As a generator it decodes codes drawn from N(0, I) or from a Gaussian fitted to the
    training codes (`fit_code_distribution`, stored in the state_dict).
    """

    def __init__(self, channels: int = 1, latent_dim: int = 16, width: int = 32):
        super().__init__()
        self.config = {"channels": channels, "latent_dim": latent_dim, "width": width}
        self.channels, self.latent_dim = channels, latent_dim
        self.encoder = ConvEncoder(channels, width, latent_dim)
        self.decoder = ConvDecoder(latent_dim, width, channels)
        self.register_buffer("code_mean", torch.zeros(latent_dim))
        self.register_buffer("code_scale_tril", torch.eye(latent_dim))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, 28, 28) -> (N, latent_dim)."""
        return self.encoder(self._check(x).to(self.device))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self._check_codes(z).to(self.device))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, latent_dim) -> (N, C, 28, 28) pixel probabilities."""
        return torch.sigmoid(self.decode_logits(z))

    def _reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        bce = nn.functional.binary_cross_entropy_with_logits(self.decoder(self.encoder(x)), x, reduction="none")
        return bce.flatten(1).sum(1)

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, 28, 28) -> (N,) binary cross-entropy of the reconstruction, summed over pixels."""
        return self._reconstruction_loss(self._check(x))

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": self._reconstruction_loss(x).mean()}

    @torch.no_grad()
    def fit_code_distribution(self, x: torch.Tensor, batch_size: int = 2000) -> None:
        """Fit a full-covariance Gaussian to the codes of images x (N, C, 28, 28)."""
        was_training = self.training
        self.eval()
        z = torch.cat([self.encode(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).double()
        cov = torch.cov(z.T) + 1e-5 * torch.eye(self.latent_dim, dtype=z.dtype, device=z.device)
        self.code_mean.copy_(z.mean(0))
        self.code_scale_tril.copy_(torch.linalg.cholesky(cov))
        self.train(was_training)

    @torch.no_grad()
    def sample(self, n: int, prior: str = "fitted", generator: torch.Generator | None = None) -> torch.Tensor:
        """n images decoded from codes ~ the fitted Gaussian ("fitted") or N(0, I) ("standard")."""
        if prior not in ("fitted", "standard"):
            raise ValueError(f"prior must be 'fitted' or 'standard', got {prior!r}")
        n = check_count(n)
        eps = settings.randn((n, self.latent_dim), generator, device=self.device)
        z = eps if prior == "standard" else self.code_mean + eps @ self.code_scale_tril.T
        return self.decode(z)


class VAE(_ImageModel):
    """Conv VAE: q(z|x) = N(mu(x), diag sigma^2(x)), a pluggable prior p(z) (`priors.py`, default
    N(0, I)) and a pluggable likelihood p(x|z) (`likelihoods.py`, default Bernoulli).

    arch: "strided" (stride-2 convs / transposed convs, as the AE) or "pooled" (conv + ELU +
    average pooling down, linear + bilinear upsampling + conv up), or "dcgan" (the strided encoder,
    and as decoder the GAN's `DCGANGenerator` without its final sigmoid: `nets.DCGANDecoder`).

    loss(x) is the negative ELBO per image, -E_q[log p(x|z)] + KL(q(z|x) || p(z)), with one
    reparameterised sample; the KL is the prior's closed form where it has one, else the
    one-sample Monte-Carlo estimate log q(z|x) - log p(z).
    """

    def __init__(self, channels: int = 1, latent_dim: int = 16, width: int = 32,
                 likelihood: str = "bernoulli", likelihood_kwargs: dict | None = None,
                 arch: str = "strided", prior: str = "standard_normal", prior_kwargs: dict | None = None,
                 image_size: int = 28):
        super().__init__()
        if arch not in ENCODERS:
            raise ValueError(f"arch must be one of {sorted(ENCODERS)}, got {arch!r}")
        self.config = {"channels": channels, "latent_dim": latent_dim, "width": width,
                       "likelihood": likelihood, "likelihood_kwargs": dict(likelihood_kwargs or {}),
                       "arch": arch, "prior": prior, "prior_kwargs": dict(prior_kwargs or {}),
                       "image_size": image_size}
        self.channels, self.latent_dim, self.image_size = channels, latent_dim, image_size
        self.image_shape = (channels, image_size, image_size)
        self.likelihood = make_likelihood(likelihood, **(likelihood_kwargs or {}))
        self.encoder = ENCODERS[arch](channels, width, 2 * latent_dim, image_size=image_size)
        self.decoder = DECODERS[arch](latent_dim, width, channels * self.likelihood.n_params, image_size=image_size)
        # the prior is built last, so that under one seed two VAEs that differ by their prior alone
        # start from the same encoder and decoder weights (a learnable prior draws its own afterwards)
        self.prior = make_prior(prior, latent_dim, **(prior_kwargs or {}))

    def _posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x.to(self.device)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, S, S) -> mean (N, L) and log-variance (N, L) of q(z | x)."""
        return self._posterior(self._check(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) -> (N, L): the posterior mean."""
        return self.posterior(x)[0]

    def decode_params(self, z: torch.Tensor) -> torch.Tensor:
        """(N, L) -> (N, C * n_params, S, S): the likelihood's raw parameters."""
        return self.decoder(self._check_codes(z).to(self.device))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, L) -> (N, C, S, S): the mean of p(x | z)."""
        return self.likelihood.mean(self.decode_params(z))

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S), (N, L) -> (N,) log p(x | z)."""
        return self.likelihood.log_prob(self.decode_params(z), x.to(self.device))

    def _elbo_terms(self, x, generator=None, log_likelihood=None) -> dict[str, torch.Tensor]:
        x = x.to(self.device)
        mu, logvar = self._posterior(x)
        z = reparameterize(mu, logvar, generator)
        log_likelihood = log_likelihood or self.likelihood.log_prob
        rec = log_likelihood(self.decoder(z), x)
        kl = self.prior.kl(mu, logvar, z)
        return {"rec": rec, "kl": kl, "elbo": rec - kl}

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None,
                   log_likelihood=None) -> dict[str, torch.Tensor]:
        """(N, C, S, S) -> {"rec": log p(x|z) (N,), "kl": KL(q || p) (N,), "elbo": rec - kl} at one
        reparameterised sample z ~ q(z|x) drawn with `generator`.

        log_likelihood(params (N, C*n_params, S, S), x) -> (N,) replaces the likelihood's own
        `log_prob`, e.g. its `discrete_log_prob` to score 256-level images on a common scale."""
        return self._elbo_terms(self._check(x), generator, log_likelihood)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        t = self._elbo_terms(x)
        return {"loss": -t["elbo"].mean(), "rec": -t["rec"].mean(), "kl": t["kl"].mean()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, C, S, S): decoder means at z ~ p(z); n = 0 gives an empty batch."""
        n = check_count(n)
        return self.decode(self.prior.sample(n, generator, device=self.device))

    @torch.no_grad()
    def mean_and_sample(self, z: torch.Tensor, generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, L) codes -> the mean of p(x | z) and one draw x' ~ p(x | z), each (N, C, S, S)."""
        params = self.decode_params(z)
        return self.likelihood.mean(params), self.likelihood.sample(params, generator=generator)

    @torch.no_grad()
    def sample_posterior_codes(self, x: torch.Tensor, generator: torch.Generator | None = None,
                               n_samples: int | None = None) -> torch.Tensor:
        """(N, C, S, S) -> (N, L) one z ~ q(z | x) per image, or (N, K, L) with K = n_samples."""
        mu, logvar = self.posterior(x)
        return reparameterize(mu, logvar, generator, n_samples)


class ChannelWise(nn.Module):
    """A one-channel model applied to each channel of (N, 3, 28, 28) images with shared weights.

    Each channel of a stacked image is an independent digit, so the mono model already knows
    everything a channel can hold: channels are encoded separately and their codes concatenated,
    (N, 3, 28, 28) -> (N, 3 * L); decoding splits the code back into three. Sampling draws the
    three channels independently. Wraps shipped mono weights, e.g. `ChannelWise(load("vae_mono"))`.
    """

    def __init__(self, mono: nn.Module, channels: int = 3):
        super().__init__()
        if getattr(mono, "channels", None) != 1:
            raise ValueError("ChannelWise wraps a one-channel model (channels == 1)")
        self.mono, self.channels = mono, channels
        self.latent_dim = channels * mono.latent_dim

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        validate_images(x, channels=(self.channels,))
        return x.reshape(len(x) * self.channels, 1, *x.shape[2:])   # (N, 3, H, W) -> (3N, 1, H, W)

    def _join(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(len(y) // self.channels, self.channels * y.shape[1], *y.shape[2:])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 28, 28) -> (N, 3 L): the three channel codes side by side (R, G, B)."""
        z = self.mono.encode(self._split(x))                         # (3N, L)
        return z.reshape(len(x), self.latent_dim)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, 3 L) -> (N, 3, 28, 28)."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"codes must have shape (N, {self.latent_dim}), got {tuple(z.shape)}")
        return self._join(self.mono.decode(z.reshape(len(z) * self.channels, -1)))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def sample(self, n: int, **kwargs) -> torch.Tensor:
        """n images whose channels are independent mono samples."""
        n = check_count(n)
        return self._join(self.mono.sample(n * self.channels, **kwargs))

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 28, 28) -> (N,): the mono model's per-image score summed over the channels."""
        return self.mono.reconstruction_loss(self._split(x)).reshape(len(x), self.channels).sum(1)


class GAN(nn.Module):
    """A generator and a discriminator (or critic) trained against each other.

    `sample(n, generator)` -> (n, C, S, S) in [0, 1] and `decode(z)` (N, latent_dim) -> images, like
    the VAE, so every evaluation and latent-space tool treats all generative models alike. The
    latent prior is N(0, I). `pack` > 1 makes a PacGAN discriminator that judges `pack` samples
    at once (stacked along the channels); `d_norm` is the discriminator's normalisation.

    snapshots > 0 keeps a record of training in the state_dict (so it ships with the weights and
    survives a resumed run): `fixed_noise` (SNAPSHOT_IMAGES, latent_dim), codes drawn once from
    seed 0, and room for `snapshots` decodings of them, filled in order by `take_snapshot()` (a
    recipe calls it after every epoch) and read back by `fixed_noise_snapshots()`.

    ema > 0 keeps `generator_ema`, an exponential moving average of the generator's weights
    (Yazici et al. 2019): after every generator step `update_ema()` moves each averaged weight a
    fraction 1 - ema towards the trained one (ema = 0.999 averages over about the last 1,000
    steps). The averaged network is then the one that samples and decodes (`sampler`); its batch-norm
    statistics are not averaged but measured afresh on its own outputs by `refresh_ema_statistics()`
    (which `divergences.fit_gan` calls after every epoch). The adversarial steps always train
    `generator`. blocks > 0 deepens the generator (`nets.DCGANGenerator`).
    """

    SNAPSHOT_IMAGES = 16
    EMA_STATISTICS_CODES = 10_000       # codes through the averaged generator to measure its batch norms

    def __init__(self, channels: int = 1, latent_dim: int = 100, width: int = 64, image_size: int = 28,
                 pack: int = 1, d_norm: str | None = "batch", snapshots: int = 0, ema: float = 0.0,
                 blocks: int = 0):
        super().__init__()
        if pack < 1:
            raise ValueError(f"pack must be >= 1, got {pack}")
        if snapshots < 0:
            raise ValueError(f"snapshots must be >= 0, got {snapshots}")
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema must be in [0, 1) (0: no weight averaging), got {ema}")
        self.config = {"channels": channels, "latent_dim": latent_dim, "width": width, "image_size": image_size,
                       "pack": pack, "d_norm": d_norm}
        if snapshots:
            self.config["snapshots"] = snapshots
        if ema:
            self.config["ema"] = ema
        if blocks:
            self.config["blocks"] = blocks
        self.channels, self.latent_dim, self.image_size, self.pack = channels, latent_dim, image_size, pack
        self.generator = DCGANGenerator(latent_dim, width, channels, image_size, blocks)
        self.discriminator = DCGANDiscriminator(channels, width, d_norm, image_size, pack)
        self.ema = float(ema)
        if ema:
            # built under a forked RNG, so the global RNG is where it would be without ema: the
            # same recipe with and without averaging draws the same initial weights and noise
            with torch.random.fork_rng(devices=[]):
                self.generator_ema = DCGANGenerator(latent_dim, width, channels, image_size, blocks)
            self.generator_ema.load_state_dict(self.generator.state_dict())
            self.generator_ema.requires_grad_(False)
        self.snapshots = snapshots
        if snapshots:
            k = self.SNAPSHOT_IMAGES
            self.register_buffer("fixed_noise", torch.randn(k, latent_dim, generator=torch.Generator().manual_seed(0)))
            self.register_buffer("snapshot_images", torch.zeros(snapshots, k, channels, image_size, image_size,
                                                                dtype=torch.uint8))
            self.register_buffer("snapshot_count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def take_snapshot(self) -> None:
        """Decode `fixed_noise` in eval mode into the next free snapshot slot (256 grey levels)."""
        if not self.snapshots:
            raise ValueError("this GAN keeps no snapshots (built with snapshots=0)")
        slot = int(self.snapshot_count)
        if slot >= self.snapshots:
            raise ValueError(f"all {self.snapshots} snapshot slots are taken")
        was_training = self.training
        self.eval()
        images = self.decode(self.fixed_noise)
        self.train(was_training)
        self.snapshot_images[slot] = (images * 255).round().to(torch.uint8)
        self.snapshot_count += 1

    def fixed_noise_snapshots(self) -> torch.Tensor:
        """(taken, SNAPSHOT_IMAGES, C, S, S) floats in [0, 1]: the fixed codes decoded at each
        snapshot so far, oldest first (empty for a GAN without snapshots)."""
        if not self.snapshots:
            return torch.zeros(0, self.SNAPSHOT_IMAGES, self.channels, self.image_size, self.image_size)
        return self.snapshot_images[: int(self.snapshot_count)].float() / 255

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def check_batch(self, data: tuple[torch.Tensor, ...]) -> None:
        validate_images(data[0], channels=(self.channels,), size=self.image_size)

    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, latent_dim) codes z ~ N(0, I) on the model's device."""
        return settings.randn((n, self.latent_dim), generator, device=self.device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, latent_dim) -> (N, C, S, S) images in [0, 1]."""
        return self.sampler(check_codes(z, self.latent_dim).to(self.device))

    @property
    def sampler(self) -> nn.Module:
        """The network that turns codes into images: `generator_ema` when the GAN averages its
        generator's weights (ema > 0), else `generator`."""
        return self.generator_ema if self.ema else self.generator

    def _require_average(self) -> None:
        if not self.ema:
            raise ValueError("this GAN keeps no weight average (built with ema=0)")

    @torch.no_grad()
    def update_ema(self) -> None:
        """After a generator step: averaged weight <- ema * averaged + (1 - ema) * trained."""
        self._require_average()
        for averaged, trained in zip(self.generator_ema.parameters(), self.generator.parameters()):
            averaged.lerp_(trained, 1.0 - self.ema)

    def without_average(self) -> "GAN":
        """A copy of this GAN without its weight average: the trained generator (the weights of the
        last step, with their own batch-norm statistics) samples and decodes. The copy has its own
        tensors and no snapshots (those were decoded by the average); building it leaves the global
        RNG alone, and this GAN is unchanged."""
        self._require_average()
        config = {k: v for k, v in self.config.items() if k not in ("ema", "snapshots")}
        with torch.random.fork_rng(devices=[]):
            copy = GAN(**config).to(self.device)
        networks = ("generator.", "discriminator.")
        copy.load_state_dict({k: v for k, v in self.state_dict().items() if k.startswith(networks)})
        return copy.train(self.training)

    @torch.no_grad()
    def refresh_ema_statistics(self, batch_size: int = 500) -> None:
        """Measure the averaged generator's batch-norm statistics afresh: each normalised feature's
        mean and variance averaged over batches of `batch_size` of EMA_STATISTICS_CODES codes drawn
        from seed 0 (the trained generator's running statistics belong to other weights)."""
        self._require_average()
        norms = [m for m in self.generator_ema.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None                       # a cumulative average over the batches below
        was_training = self.generator_ema.training
        self.generator_ema.train()
        try:
            codes = self.latent(self.EMA_STATISTICS_CODES, torch.Generator(device=self.device).manual_seed(0))
            for chunk in codes.split(batch_size):
                self.generator_ema(chunk)
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
            self.generator_ema.train(was_training)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, batch_size: int = 2000) -> torch.Tensor:
        """n generated images (n, C, S, S) in [0, 1], made in eval mode (batch norm's running
        statistics), in batches of `batch_size`."""
        n = check_count(n)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if n == 0:
            return torch.empty(0, self.channels, self.image_size, self.image_size, device=self.device)
        was_training = self.training
        self.eval()
        out = torch.cat([self.decode(self.latent(min(batch_size, n - s), generator)) for s in range(0, n, batch_size)])
        self.train(was_training)
        return out

    def judge(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) with N a multiple of `pack` -> (N / pack,) discriminator logits; with
        pack > 1, consecutive groups of `pack` images are stacked along the channels."""
        n = len(images)
        if n % self.pack:
            raise ValueError(f"the number of images ({n}) must be a multiple of pack = {self.pack}")
        return self.discriminator(images.reshape(n // self.pack, self.pack * self.channels, *images.shape[2:]))


# The classes a checkpoint manifest may name: `checkpoints.build_model` builds only these.
ARCHITECTURES: dict[str, type[nn.Module]] = {
    "DigitClassifier": DigitClassifier,
    "AutoEncoder": AutoEncoder,
    "VAE": VAE,
    "GAN": GAN,
}
