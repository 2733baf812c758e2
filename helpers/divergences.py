"""Neural estimators of the Jensen-Shannon divergence and the Wasserstein-1 distance
(IFT6135 Problem 1), the gradient penalty, toy samplers and a density read off a discriminator.

Many estimators train at once: a `GroupedMLP` holds G independent MLPs whose weights are stacked
as (G, in, out) and evaluated by one batched matrix product per layer. Sample sets are therefore
laid out as (G, N, D): group g compares p's samples p[g] (N, D) with q's samples q[g] (N, D).
Training goes through `helpers.training.fit` (the one loop): the per-group losses are summed, so
each group's parameters get exactly the gradient of its own loss and the groups never interact
(Adam's moments are per element).

- JSD: a discriminator D = sigmoid(logit) maximises
  log 2 + 1/2 E_p[log D(x)] + 1/2 E_q[log(1 - D(y))], whose supremum over all D is JSD(p, q).
- Wasserstein: a critic T maximises E_p[T(x)] - E_q[T(y)] - lambda E_r[(||grad T(z)|| - 1)^2] on
  random interpolates z (the WGAN-GP penalty of Gulrajani et al. 2017); the reported estimate is
  E_p[T] - E_q[T] on held-out samples.
- Density: with D* = f1 / (f1 + f0), f1 = f0 D / (1 - D) = f0 exp(logit).
- Image GANs: `dcgan_step` (binary cross-entropy, non-saturating generator loss, PacGAN packing)
  and `wgan_gp_step` (n_critic critic steps per generator step, gradient penalty), steps for `fit`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from . import settings
from .training import History, fit

LOG2 = math.log(2.0)
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "elu": nn.ELU, "tanh": nn.Tanh}


def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def check_sample_sets(p: torch.Tensor, q: torch.Tensor) -> None:
    """Raise ValueError unless p and q are float tensors of the same shape (G, N, D)."""
    for name, t in (("p", p), ("q", q)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3 or not t.is_floating_point():
            raise ValueError(f"{name} must be a float tensor of shape (G, N, D) (groups, samples, "
                             f"features; x[None] makes one group), got {_shape(t)}")
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape (G, N, D), got {_shape(p)} and {_shape(q)}")


# ------------------------------------------------------------------------------------- samplers

def parallel_lines(thetas: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Samples of (theta, Z) with Z ~ U[0, 1], one group per theta: thetas (G,) -> (G, n, 2).
    p of Problem 1.3 is `parallel_lines(torch.zeros(G), n, g)`, q_theta is `parallel_lines(thetas, n, g)`."""
    if not isinstance(thetas, torch.Tensor) or thetas.dim() != 1:
        raise ValueError(f"thetas must be a 1-D tensor (G,), got {_shape(thetas)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    z = settings.rand((len(thetas), n, 1), generator, device=thetas.device, dtype=torch.float32)
    first = thetas.to(torch.float32)[:, None, None].expand(-1, n, 1)
    return torch.cat([first, z], dim=2)


def normal_density(x: torch.Tensor) -> torch.Tensor:
    """f0: the standard normal density, elementwise (any shape -> same shape)."""
    return torch.exp(-0.5 * x ** 2) / math.sqrt(2 * math.pi)


class NormalMixture:
    """A 1-D mixture of normals, sum_k w_k N(mu_k, sigma_k^2), with exact density and sampling."""

    def __init__(self, weights: list[float], means: list[float], stds: list[float]):
        if not (len(weights) == len(means) == len(stds) >= 1):
            raise ValueError("weights, means and stds must be non-empty lists of the same length")
        if min(weights) <= 0 or abs(sum(weights) - 1) > 1e-9 or min(stds) <= 0:
            raise ValueError(f"need positive weights summing to 1 and positive stds, got {weights}, {stds}")
        self.weights = torch.tensor(weights, dtype=torch.float64)
        self.means = torch.tensor(means, dtype=torch.float64)
        self.stds = torch.tensor(stds, dtype=torch.float64)

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """f1(x) elementwise: any shape -> same shape (computed in float64, returned in x's dtype)."""
        u = (x.to(torch.float64)[..., None] - self.means) / self.stds
        f = (self.weights * torch.exp(-0.5 * u ** 2) / (self.stds * math.sqrt(2 * math.pi))).sum(-1)
        return f.to(x.dtype)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n draws: (n,) float32 (component by inverse CDF of the weights, then a normal draw)."""
        u = settings.rand((n,), generator, dtype=torch.float64)
        k = torch.searchsorted(torch.cumsum(self.weights, 0)[:-1].contiguous(), u, right=True)
        eps = settings.randn((n,), generator, dtype=torch.float64)
        return (self.means[k] + self.stds[k] * eps).to(torch.float32)


def bimodal_f1() -> NormalMixture:
    """The f1 of the workbook's Problem 1.4: 0.3 N(-1.5, 0.5^2) + 0.7 N(1, 1.3^2). Bimodal and
    skewed: a narrow bump on the left, and far out on both sides (|x| beyond about 4) tails
    heavier than the standard normal f0's, those of the wide component."""
    return NormalMixture([0.3, 0.7], [-1.5, 1.0], [0.5, 1.3])


class SheetDistribution4:
    """IFT6135 Problem 1.4's `distribution4` (the sampler of the assignment's repository): the law
    of y = g(x) = tanh(2x + 1) + 0.75 x with x ~ N(0, 1). g is strictly increasing
    (g'(x) = 2 (1 - tanh^2(2x + 1)) + 0.75 >= 0.75), so by the change of variables
    f1(y) = phi(g^-1(y)) / g'(g^-1(y)) exactly; g^-1 by bisection in float64 on the bracket
    [(y - 1) / 0.75, (y + 1) / 0.75], which holds because |tanh| < 1."""

    BISECTIONS = 80

    @staticmethod
    def transform(x: torch.Tensor) -> torch.Tensor:
        """g(x) elementwise."""
        return torch.tanh(2 * x + 1) + 0.75 * x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """g^-1(y) elementwise, in float64."""
        y = y.to(torch.float64)
        lo, hi = (y - 1) / 0.75, (y + 1) / 0.75
        for _ in range(self.BISECTIONS):
            mid = (lo + hi) / 2
            below = self.transform(mid) < y
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return (lo + hi) / 2

    def density(self, y: torch.Tensor) -> torch.Tensor:
        """f1(y) elementwise: any shape -> same shape (computed in float64, returned in y's dtype)."""
        x = self.inverse(y)
        slope = 2 * (1 - torch.tanh(2 * x + 1) ** 2) + 0.75
        return (normal_density(x) / slope).to(y.dtype)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n draws: (n,) float32, g of standard normal draws."""
        return self.transform(settings.randn((n,), generator, dtype=torch.float64)).to(torch.float32)


# ------------------------------------------------------------------------------------- networks

class GroupedMLP(nn.Module):
    """G independent MLPs with the same layer sizes, evaluated together.

    sizes: [in, hidden, ..., out] (3 linear layers for [2, 64, 64, 1]). Layer l has weight
    (G, sizes[l], sizes[l+1]) and bias (G, 1, sizes[l+1]), initialised like `nn.Linear`
    (uniform in +-1/sqrt(fan_in)) from `generator`. forward: (G, N, in) -> (G, N, out), group g
    only sees x[g]. `member(g)` returns group g as a plain `nn.Sequential` of `nn.Linear`.
    """

    def __init__(self, groups: int, sizes: list[int], activation: str = "leaky_relu", *,
                 generator: torch.Generator):
        super().__init__()
        if groups < 1 or len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"need groups >= 1 and at least two positive sizes, got {groups}, {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.groups, self.sizes, self.activation = groups, list(sizes), activation
        self.act = ACTIVATIONS[activation]()
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            w = (2 * settings.rand((groups, fan_in, fan_out), generator) - 1) * bound
            b = (2 * settings.rand((groups, 1, fan_out), generator) - 1) * bound
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[0] != self.groups \
                or x.shape[2] != self.sizes[0]:
            raise ValueError(f"GroupedMLP expects input of shape (G, N, in) = ({self.groups}, N, "
                             f"{self.sizes[0]}), got {_shape(x)}")
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = self.act(h)
        return h

    def member(self, g: int) -> nn.Sequential:
        """Group g as an ordinary MLP (a copy): (N, in) -> (N, out)."""
        if not 0 <= g < self.groups:
            raise IndexError(f"group {g} out of range for {self.groups} groups")
        layers: list[nn.Module] = []
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            lin = nn.utils.skip_init(nn.Linear, w.shape[1], w.shape[2])     # no draw: overwritten below
            with torch.no_grad():
                lin.weight.copy_(w[g].T)
                lin.bias.copy_(b[g, 0])
            layers.append(lin)
            if i < len(self.weights) - 1:
                layers.append(ACTIVATIONS[self.activation]())
        return nn.Sequential(*layers)


# ----------------------------------------------------------------------------------- objectives

def jsd_objective(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """log 2 + 1/2 mean_p log D(x) + 1/2 mean_q log(1 - D(y)) with D = sigmoid(logit), from the
    discriminator's logits on p's and q's samples: (..., N), (..., M) -> (...). Its maximum over
    D is JSD(p, q) in nats (0 at D = 1/2 everywhere, log 2 for disjoint supports)."""
    log_d = nn.functional.logsigmoid(logits_p)            # log sigmoid(l)
    log_1md = nn.functional.logsigmoid(-logits_q)         # log(1 - sigmoid(l)) = log sigmoid(-l)
    return LOG2 + 0.5 * log_d.mean(-1) + 0.5 * log_1md.mean(-1)


def wasserstein_objective(t_p: torch.Tensor, t_q: torch.Tensor) -> torch.Tensor:
    """mean_p T(x) - mean_q T(y) from the critic's values: (..., N), (..., M) -> (...). For a
    1-Lipschitz T it is a lower bound on W1(p, q), equal to it at the optimal T."""
    return t_p.mean(-1) - t_q.mean(-1)


def gradient_penalty(critic, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None,
                     sample_dims: int = 1) -> torch.Tensor:
    """E_r[(||grad_z T(z)||_2 - 1)^2] at z = a x + (1 - a) y, a ~ U[0, 1] per sample (WGAN-GP).

    x, y: samples of p and q of the same shape; the first `sample_dims` dimensions index samples,
    the rest are one point (norm over them): (N, D) or images (N, C, H, W) with sample_dims=1;
    grouped sets (G, N, D) with sample_dims=2. critic maps z to values with one entry per sample
    (e.g. (N, 1), (N,), or (G, N, 1)). Returns the mean over the last sample dimension: a scalar
    for sample_dims=1, (G,) for sample_dims=2. Differentiable in the critic's parameters
    (create_graph), so the penalty can be added to a loss; x and y themselves are detached (the
    penalty trains the critic, not whatever produced y). critic: a module or any callable (e.g. a
    GAN's `judge`). Draws a from `generator` (None: torch's global RNG, e.g. under `fit`'s fork).
    """
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or x.shape != y.shape:
        raise ValueError(f"x and y must be tensors of the same shape, got {_shape(x)} and {_shape(y)}")
    if sample_dims < 1 or x.dim() <= sample_dims:
        raise ValueError(f"x of shape {_shape(x)} needs more than sample_dims={sample_dims} dimensions "
                         f"(sample dimensions, then the point's own)")
    a_shape = x.shape[:sample_dims] + (1,) * (x.dim() - sample_dims)
    a = settings.rand(a_shape, generator, device=x.device, dtype=x.dtype)
    z = (a * x.detach() + (1 - a) * y.detach()).requires_grad_(True)
    values = critic(z)
    if values.numel() != math.prod(x.shape[:sample_dims]):
        raise ValueError(f"critic must give one value per sample ({tuple(x.shape[:sample_dims])}), "
                         f"got {_shape(values)}")
    (grad,) = torch.autograd.grad(values.sum(), z, create_graph=True)
    norm = torch.sqrt(grad.flatten(sample_dims).pow(2).sum(-1) + 1e-12)
    return (norm - 1).pow(2).mean(-1)


# ------------------------------------------------------------------------------------- training

ADAM_BETAS = (0.5, 0.9)


def _cosine(optimizer: torch.optim.Optimizer, total_steps: int):
    """Learning rate decayed from lr to 0 along a half cosine over the whole training."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)


def _train_grouped(p: torch.Tensor, q: torch.Tensor, terms, *, hidden: int, epochs: int, batch_size: int,
                   lr: float, optimizer: str, activation: str, decay: bool, seed: int, progress: bool,
                   desc: str) -> tuple[GroupedMLP, History]:
    """Build a GroupedMLP [D, hidden, hidden, 1] from `seed` and train it with `fit` on the rows of
    p, q (G, N, D), seen by `fit` as (N, G, D) so that it minibatches along N. terms(model, xp, xq)
    gets (G, B, D) minibatches and returns {"loss": scalar, other scalars to log}."""
    check_sample_sets(p, q)
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    groups, _, dim = p.shape
    model = GroupedMLP(groups, [dim, hidden, hidden, 1], activation,
                       generator=torch.Generator().manual_seed(seed)).to(p.device)
    with torch.no_grad():                      # start from a constant output: D = 1/2, T = 0
        model.weights[-1].zero_()
        model.biases[-1].zero_()
    opt = (torch.optim.Adam(model.parameters(), lr=lr, betas=ADAM_BETAS) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr))

    def loss_fn(m, batch):
        xp, xq = (t.transpose(0, 1) for t in batch)                 # (B, G, D) -> (G, B, D)
        return terms(m, xp, xq)

    history = fit(model, loss_fn, (p.transpose(0, 1), q.transpose(0, 1)), epochs=epochs,
                  batch_size=batch_size, optimizer=opt, scheduler=_cosine if decay else None, seed=seed,
                  progress=progress, desc=desc)
    return model, history


def train_discriminator(p: torch.Tensor, q: torch.Tensor, *, hidden: int = 32, epochs: int = 4,
                        batch_size: int = 512, lr: float = 2e-3, optimizer: str = "adam",
                        activation: str = "leaky_relu", decay: bool = True, seed: int = 0,
                        progress: bool = True, desc: str = "JSD") -> tuple[GroupedMLP, History]:
    """Train G discriminators to maximise `jsd_objective`, group g between p[g] and q[g].

    p, q: (G, N, D) on the device to train on. The model is a GroupedMLP [D, hidden, hidden, 1]
    whose output is the logit of D; it is initialised from `seed`. One epoch is N / batch_size
    steps of `fit`; the optimiser is Adam(lr, betas ADAM_BETAS) or plain SGD(lr), with the
    learning rate decayed to 0 along a cosine when `decay`. Returns the model (eval mode) and
    its History ("train_loss" = -sum of the groups' objectives, "train_objective" = their mean).
    """
    def terms(m, xp, xq):
        objective = jsd_objective(m(xp).squeeze(-1), m(xq).squeeze(-1))              # (G,)
        return {"loss": -objective.sum(), "objective": objective.mean().detach()}

    return _train_grouped(p, q, terms, hidden=hidden, epochs=epochs, batch_size=batch_size, lr=lr,
                          optimizer=optimizer, activation=activation, decay=decay, seed=seed,
                          progress=progress, desc=desc)


def train_critic(p: torch.Tensor, q: torch.Tensor, *, penalty: float = 10.0, hidden: int = 32,
                 epochs: int = 4, batch_size: int = 512, lr: float = 2e-3, optimizer: str = "adam",
                 activation: str = "leaky_relu", decay: bool = True, seed: int = 0,
                 progress: bool = True, desc: str = "WD") -> tuple[GroupedMLP, History]:
    """Train G critics to maximise E_p[T] - E_q[T] - penalty * `gradient_penalty`, group g
    between p[g] and q[g].

    p, q: (G, N, D) on the device to train on; model, optimiser and schedule as in
    `train_discriminator` (the output is T itself); the interpolation weights are drawn from a
    generator seeded by seed + 1. Returns the model (eval mode) and its History ("train_loss",
    "train_objective" = mean over groups of E_p T - E_q T on the minibatches, "train_penalty").
    """
    if penalty < 0:
        raise ValueError(f"penalty must be >= 0, got {penalty}")
    g_interp = torch.Generator().manual_seed(seed + 1)

    def terms(m, xp, xq):
        objective = wasserstein_objective(m(xp).squeeze(-1), m(xq).squeeze(-1))      # (G,)
        gp = gradient_penalty(m, xp, xq, g_interp, sample_dims=2)                    # (G,)
        return {"loss": -(objective - penalty * gp).sum(), "objective": objective.mean().detach(),
                "penalty": gp.mean().detach()}

    return _train_grouped(p, q, terms, hidden=hidden, epochs=epochs, batch_size=batch_size, lr=lr,
                          optimizer=optimizer, activation=activation, decay=decay, seed=seed,
                          progress=progress, desc=desc)


@torch.no_grad()
def jsd_estimate(discriminator: nn.Module, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The JSD estimate (nats) of each group on (held-out) samples: p, q (G, N, D) -> (G,)."""
    check_sample_sets(p, q)
    return jsd_objective(discriminator(p).squeeze(-1), discriminator(q).squeeze(-1))


@torch.no_grad()
def wasserstein_estimate(critic: nn.Module, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The W1 estimate E_p[T] - E_q[T] of each group on (held-out) samples: (G, N, D) x 2 -> (G,)."""
    check_sample_sets(p, q)
    return wasserstein_objective(critic(p).squeeze(-1), critic(q).squeeze(-1))


# ------------------------------------------------------------------------ Problem 1.3: the sweep

@dataclass
class SweepResult:
    """Held-out estimates of the parallel-lines sweep: thetas, jsd, wd are (G,) CPU tensors; the
    trained grouped discriminator and critic with their histories; seconds is the wall-clock time
    of the whole call, cpu_seconds the CPU time of this process (all threads) over it."""

    thetas: torch.Tensor
    jsd: torch.Tensor
    wd: torch.Tensor
    discriminator: GroupedMLP
    critic: GroupedMLP
    jsd_history: History
    wd_history: History
    seconds: float
    cpu_seconds: float


def parallel_lines_sweep(thetas: torch.Tensor, *, n_train: int = 512 * 100, n_test: int = 20_000,
                         jsd_epochs: int = 4, wd_epochs: int = 6, batch_size: int = 512, lr: float = 2e-3,
                         penalty: float = 50.0, hidden: int = 32, optimizer: str = "adam", decay: bool = True,
                         seed: int = 0, device=None, progress: bool = True) -> SweepResult:
    """Problem 1.3: JSD and W1 between p = law of (0, Z) and q_theta = law of (theta, Z), Z ~ U[0, 1],
    for every theta at once (one grouped discriminator and one grouped critic, G = len(thetas)).

    thetas: (G,). Draws n_train training and n_test held-out samples of p and of each q_theta
    from a generator seeded by `seed`; trains the discriminator for `jsd_epochs` and the critic
    for `wd_epochs` passes of n_train / batch_size minibatch steps (Adam, or SGD with
    optimizer="sgd"; lr decayed to 0 along a cosine when `decay`), then evaluates both on the
    held-out samples. Returns a SweepResult ((G,) estimates) with the wall-clock and CPU seconds
    of the whole call (sampling, both trainings, evaluation)."""
    if not isinstance(thetas, torch.Tensor) or thetas.dim() != 1 or len(thetas) == 0:
        raise ValueError(f"thetas must be a non-empty 1-D tensor (G,), got {_shape(thetas)}")
    start, cpu_start = time.perf_counter(), time.process_time()
    device = torch.device(device) if device is not None else torch.device("cpu")
    thetas = thetas.detach().to("cpu", torch.float32)
    g = torch.Generator().manual_seed(seed)
    zeros = torch.zeros_like(thetas)
    p_train, q_train = parallel_lines(zeros, n_train, g).to(device), parallel_lines(thetas, n_train, g).to(device)
    p_test, q_test = parallel_lines(zeros, n_test, g).to(device), parallel_lines(thetas, n_test, g).to(device)
    common = dict(hidden=hidden, batch_size=batch_size, lr=lr, optimizer=optimizer, decay=decay, progress=progress)
    disc, jsd_history = train_discriminator(p_train, q_train, epochs=jsd_epochs, seed=seed + 10, desc="JSD",
                                            **common)
    critic, wd_history = train_critic(p_train, q_train, epochs=wd_epochs, penalty=penalty, seed=seed + 20,
                                      desc="WD", **common)
    jsd = jsd_estimate(disc, p_test, q_test).cpu()
    wd = wasserstein_estimate(critic, p_test, q_test).cpu()
    return SweepResult(thetas, jsd, wd, disc, critic, jsd_history, wd_history, time.perf_counter() - start,
                       time.process_time() - cpu_start)


def theta_gradients(result: SweepResult, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The slopes d(estimate)/d(theta) that a model of q_theta would be trained with: the JSD and
    W1 estimates on n fresh samples, differentiated in theta through the samples (theta, Z) with
    the trained discriminator and critic held fixed. Returns two (G,) CPU tensors (JSD, W1)."""
    device = next(result.critic.parameters()).device
    thetas = result.thetas.clone().to(device).requires_grad_(True)
    p = parallel_lines(torch.zeros(len(thetas)), n, generator).to(device)
    q = parallel_lines(thetas, n, generator)                       # differentiable in thetas
    jsd = jsd_objective(result.discriminator(p).squeeze(-1), result.discriminator(q).squeeze(-1))
    (jsd_slope,) = torch.autograd.grad(jsd.sum(), thetas)
    wd = wasserstein_objective(result.critic(p).squeeze(-1), result.critic(q).squeeze(-1))
    (wd_slope,) = torch.autograd.grad(wd.sum(), thetas)
    return jsd_slope.cpu(), wd_slope.cpu()


# --------------------------------------------------------------- Problem 1.4: density estimation

def density_from_discriminator(d: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
    """f1 estimate f0 D / (1 - D), elementwise: D(x) in (0, 1) and f0(x) of the same shape ->
    same shape. Exact when D = f1 / (f1 + f0), the optimal discriminator between f1 and f0."""
    if d.shape != f0.shape:
        raise ValueError(f"D and f0 must have the same shape, got {_shape(d)} and {_shape(f0)}")
    return f0 * d / (1 - d)


def density_from_logits(logits: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
    """The same estimate from the discriminator's logits l (D = sigmoid(l), so D / (1 - D) = e^l):
    f0 exp(l), elementwise, without the cancellation of 1 - D near D = 1. Same shapes as above."""
    if logits.shape != f0.shape:
        raise ValueError(f"logits and f0 must have the same shape, got {_shape(logits)} and {_shape(f0)}")
    return f0 * torch.exp(logits)


# ------------------------------------------------------------- adversarial steps for image GANs
# Steps for `fit(model, step=..., optimizers=...)` on a `models.GAN` (anything with `generator`,
# `discriminator`, `latent(n, generator)`, `judge(images)` and `pack`). `optimizers` holds
# "generator" and "discriminator" (`gan_optimizers`). The codes z are drawn with `generator`, or,
# by default, from torch's global RNG, which `fit` forks, seeds and saves in its resume file: a
# resumed run draws the same z as an uninterrupted one. Neither step reseeds anything.

def gan_optimizers(model: nn.Module, lr: float, betas: tuple[float, float]) -> dict[str, torch.optim.Optimizer]:
    """{"generator": Adam over model.generator, "discriminator": Adam over model.discriminator},
    both with learning rate `lr` and `betas`."""
    return {"generator": torch.optim.Adam(model.generator.parameters(), lr=lr, betas=betas),
            "discriminator": torch.optim.Adam(model.discriminator.parameters(), lr=lr, betas=betas)}


def _real_images(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The batch's images (B, C, S, S) cut to a multiple of the model's `pack` (a last batch of an
    epoch may be odd); a batch with fewer images than `pack` is an error."""
    real = batch[0]
    usable = len(real) - len(real) % model.pack
    if usable == 0:
        raise ValueError(f"a batch of {len(real)} images is smaller than pack = {model.pack}")
    return real[:usable]


def _generator_update(model: nn.Module, optimizer: torch.optim.Optimizer, loss_of_logits, n: int,
                      generator: torch.Generator | None) -> torch.Tensor:
    """One generator step on n fresh fakes: minimise loss_of_logits(judge(G(z))); the
    discriminator's parameters get no gradient (they are frozen for this backward pass). A GAN
    with a weight average (ema > 0) updates it after the step."""
    fake = model.generator(model.latent(n, generator))
    model.discriminator.requires_grad_(False)
    try:
        loss = loss_of_logits(model.judge(fake))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    finally:
        model.discriminator.requires_grad_(True)
    if model.ema:
        model.update_ema()
    return loss.detach()


def dcgan_step(model: nn.Module, batch: tuple[torch.Tensor, ...], optimizers: dict, iteration: int,
               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """One DCGAN iteration (Goodfellow et al. 2014; Radford et al. 2016) on real images batch[0]
    (B, C, S, S): a discriminator step, then a generator step.

    Discriminator: minimise BCE(D(x), 1) + BCE(D(G(z)), 0) over B real images and B fakes (their
    sum, as the TensorFlow DCGAN tutorial), i.e. ascend the minimax objective
    E[log D(x)] + E[log(1 - D(G(z)))]. Generator: the non-saturating loss BCE(D(G(z)), 1) =
    -E[log D(G(z))] on B fresh fakes. With pack > 1 (PacGAN) the discriminator judges groups of
    `pack` images stacked along the channels and B is cut to a multiple of pack.
    Returns scalars: loss_d, loss_g, d_x = mean D(x), d_g_z = mean D(G(z)) (before the
    discriminator's step), each a mean over the B / pack judged groups.
    """
    bce = nn.functional.binary_cross_entropy_with_logits
    real = _real_images(model, batch)
    n = len(real)
    fake = model.generator(model.latent(n, generator))
    d_real, d_fake = model.judge(real), model.judge(fake.detach())            # (n / pack,) logits each
    loss_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
    opt_d = optimizers["discriminator"]
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    loss_g = _generator_update(model, optimizers["generator"], lambda logits: bce(logits, torch.ones_like(logits)),
                               n, generator)
    return {"loss_d": loss_d.detach(), "loss_g": loss_g, "d_x": torch.sigmoid(d_real).mean().detach(),
            "d_g_z": torch.sigmoid(d_fake).mean().detach()}


def wgan_gp_step(model: nn.Module, batch: tuple[torch.Tensor, ...], optimizers: dict, iteration: int,
                 n_critic: int = 5, penalty: float = 10.0, generator: torch.Generator | None = None
                 ) -> dict[str, torch.Tensor]:
    """One WGAN-GP iteration (Gulrajani et al. 2017) on real images batch[0] (B, C, S, S): a critic
    step every iteration and a generator step after every `n_critic` critic steps (iterations
    n_critic - 1, 2 n_critic - 1, ... counted by `fit` over the whole run).

    Critic T (the discriminator's raw output, pack must be 1): minimise
    E[T(G(z))] - E[T(x)] + penalty * E_r[(||grad T(r)||_2 - 1)^2] on random interpolates r of
    real and fake images (`gradient_penalty`). Generator: minimise -E[T(G(z))] on B fresh fakes.
    Returns scalars: loss_critic, wasserstein = E[T(x)] - E[T(G(z))] (the critic's estimate of
    W1 on this batch, before its step), penalty (the unweighted gradient penalty), loss_g =
    -E[T(G(z))] (at the generator's update, else at this iteration's fakes) and g_step (1.0 when
    the generator moved at this iteration, else 0.0).
    """
    if model.pack != 1:
        raise ValueError(f"the WGAN-GP step needs an unpacked critic (pack = 1), got pack = {model.pack}")
    if n_critic < 1 or penalty < 0:
        raise ValueError(f"need n_critic >= 1 and penalty >= 0, got {n_critic}, {penalty}")
    real = batch[0]
    with torch.no_grad():
        fake = model.generator(model.latent(len(real), generator))
    t_real, t_fake = model.judge(real), model.judge(fake)                     # (B,) each
    wasserstein = t_real.mean() - t_fake.mean()
    gp = gradient_penalty(model.judge, real, fake, generator)
    loss_critic = -wasserstein + penalty * gp
    opt_c = optimizers["discriminator"]
    opt_c.zero_grad(set_to_none=True)
    loss_critic.backward()
    opt_c.step()
    logged = {"loss_critic": loss_critic.detach(), "wasserstein": wasserstein.detach(), "penalty": gp.detach()}
    if iteration % n_critic == n_critic - 1:
        logged["loss_g"] = _generator_update(model, optimizers["generator"], lambda t: -t.mean(), len(real),
                                             generator)
        logged["g_step"] = torch.tensor(1.0)
    else:
        logged["loss_g"] = -t_fake.mean().detach()
        logged["g_step"] = torch.tensor(0.0)
    return logged


def fit_gan(model: nn.Module, images: torch.Tensor, step, *, lr: float, betas: tuple[float, float], epochs: int,
            batch_size: int, seed: int = 0, resume_path=None, fingerprint: dict | None = None, desc: str = "GAN",
            progress: bool | str = True, log_every: int = 50, autocast: str | None = None,
            monitor=None) -> History:
    """Train a `models.GAN` on images (N, C, S, S) in [0, 1] through `fit` with `step` (`dcgan_step`,
    or `wgan_gp_step` with its settings bound by functools.partial) and Adam(lr, betas) for each
    network (`gan_optimizers`); batches of `batch_size` in an order seeded by `seed`, resumable
    from `resume_path` (see `fit`). After every epoch a GAN with a weight average (ema > 0) measures
    its averaged generator's batch-norm statistics afresh, and a GAN built with snapshots decodes its fixed
    codes into the next slot (`GAN.take_snapshot`); being in the state_dict, the record survives
    a resumed run. Returns fit's History: the step's scalars as per-epoch means ("train_<key>")
    and every `log_every` iterations (`History.steps`). autocast: see `fit` ("bf16" or None).
    monitor(model) -> {name: float}, if given, is called after every epoch (after the snapshot) and
    its values join the epoch's record (e.g. an FID against validation images)."""
    def snapshot(m):
        if m.ema:
            m.refresh_ema_statistics()
        if m.snapshots:
            m.take_snapshot()
        return monitor(m) if monitor is not None else {}
    return fit(model, step=step, optimizers=gan_optimizers(model, lr, betas), train_data=(images,), epochs=epochs,
               batch_size=batch_size, seed=seed, resume_path=resume_path, validate=snapshot,
               fingerprint=fingerprint, desc=desc, progress=progress, log_every=log_every, autocast=autocast)
