
import math

import mpmath as mp
import numpy as np
import pytest
import torch
from scipy.special import betainc
from scipy.stats import beta as beta_dist
from scipy.stats import kstest, norm

from helpers.likelihoods import Bernoulli, Beta, Categorical, Gaussian, bin_midpoints, discretize, make_likelihood
from helpers.models import VAE


def grey(n=3, seed=0):
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    x[:, :, :4] = 0.0
    x[:, :, 4:8] = 1.0          # MNIST's boundary values
    return x


def params(lik, n=3, seed=1):
    return torch.randn(n, lik.n_params, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2


def test_gaussian_matches_torch_distributions():
    lik = Gaussian(min_variance=1e-3)
    p, x = params(lik), grey()
    m, v = lik.split(p)
    want = torch.distributions.Normal(m, v.sqrt()).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(lik.log_prob(p, x), want, rtol=1e-5)
    assert (v >= 1e-3).all() and ((m > 0) & (m < 1)).all()


def test_beta_matches_torch_distributions_and_is_finite_at_0_and_1():
    lik = Beta(epsilon=1e-3)
    p, x = params(lik), grey()
    alpha, beta = lik.split(p)
    want = torch.distributions.Beta(alpha, beta).log_prob(x.clamp(1e-3, 1 - 1e-3)).flatten(1).sum(1)
    got = lik.log_prob(p, x)
    assert torch.isfinite(got).all() and torch.allclose(got, want, rtol=1e-4)


@pytest.mark.parametrize("bins", [2, 16, 256])
def test_categorical_matches_torch_distributions(bins):
    lik = Categorical(bins=bins)
    p, x = params(lik), grey()
    logits = p.view(3, 1, bins, 28, 28).movedim(2, -1)
    want = torch.distributions.Categorical(logits=logits).log_prob(discretize(x, bins)).flatten(1).sum(1)
    assert torch.allclose(lik.log_prob(p, x), want, rtol=1e-5)


def test_bernoulli_on_grey_data_is_minus_the_cross_entropy():
    lik = Bernoulli()
    p, x = params(lik), grey()
    q = torch.sigmoid(p)
    want = (x * torch.log(q) + (1 - x) * torch.log1p(-q)).flatten(1).sum(1)
    assert torch.allclose(lik.log_prob(p, x), want, rtol=1e-4)


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "beta", "categorical"])
def test_every_likelihood_is_finite_at_extreme_parameters_and_pixels(name):
    lik = make_likelihood(name)
    x = grey()
    for scale in (0.0, 30.0, -30.0):
        p = torch.full((3, lik.n_params, 28, 28), scale)
        lp = lik.log_prob(p, x)
        assert torch.isfinite(lp).all(), (name, scale)
    mean, sample = lik.mean(params(lik)), lik.sample(params(lik))
    for images in (mean, sample):
        assert images.shape == x.shape and images.min() >= 0 and images.max() <= 1


def test_discretization_round_trip():
    for bins in (2, 16, 256):
        idx = torch.arange(bins)
        assert torch.equal(discretize(bin_midpoints(idx, bins), bins), idx)
        x = torch.linspace(0, 1, 1001)
        assert (bin_midpoints(discretize(x, bins), bins) - x).abs().max() <= 0.5 / bins + 1e-6
    levels = torch.arange(256) / 255.0          # every MNIST grey level lands in the bin it belongs to
    assert torch.equal(discretize(levels, 256), torch.arange(256))


def test_vae_with_each_likelihood_trains_a_step():
    for name in ("gaussian", "beta", "categorical"):
        model = VAE(channels=1, latent_dim=2, width=4, likelihood=name)
        loss = model.loss(grey())["loss"]
        loss.backward()
        assert torch.isfinite(loss)
        assert model.decode(torch.zeros(2, 2)).shape == (2, 1, 28, 28)


def test_bad_likelihood_options():
    with pytest.raises(ValueError, match="unknown likelihood"):
        make_likelihood("poisson")
    with pytest.raises(ValueError, match="min_variance"):
        Gaussian(min_variance=0)
    with pytest.raises(ValueError, match="bins"):
        Categorical(bins=1)


@pytest.mark.parametrize("name", ["gaussian", "beta", "categorical"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_discrete_probabilities_over_grey_levels_sum_to_one(name, seed):
    lik = make_likelihood(name)
    p = torch.randn(1, lik.n_params, 1, 1, generator=torch.Generator().manual_seed(seed)) * 2  # one pixel
    levels = (torch.arange(256) / 255.0).view(256, 1, 1, 1)
    log_p = lik.discrete_log_prob(p.expand(256, -1, -1, -1), levels)                         # (256,)
    assert torch.isfinite(log_p).all()
    assert torch.logsumexp(log_p.double(), 0).exp().item() == pytest.approx(1.0, abs=1e-4)


def test_bernoulli_has_no_discrete_grey_level_distribution():
    with pytest.raises(NotImplementedError, match="grey levels"):
        Bernoulli().discrete_log_prob(torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 28, 28))


# --- discrete log-probabilities in the tails --------------------------------------------------------

OLD_FLOOR = math.log(1e-300)      # -690.78: what clamp_min(1e-300) made of a mass that rounded to 0


def inverse_softplus(y):
    return y + math.log(-math.expm1(-y))


def gaussian_pixel(lik, mean, std):
    """(1, 2, 1, 1) float64 raw parameters whose Gaussian has this mean and standard deviation."""
    raw = [math.log(mean / (1 - mean)), inverse_softplus(std ** 2 - lik.min_variance)]
    return torch.tensor(raw, dtype=torch.float64).view(1, 2, 1, 1)


def beta_pixel(lik, alpha, beta):
    """(1, 2, 1, 1) float64 raw parameters whose Beta has these concentrations."""
    raw = [inverse_softplus(alpha - lik.min_concentration), inverse_softplus(beta - lik.min_concentration)]
    return torch.tensor(raw, dtype=torch.float64).view(1, 2, 1, 1)


def level_edges(level, levels=256):
    """Exact (mpmath) edges of a grey level's interval, the end levels running to -inf / +inf."""
    lo = -mp.inf if level == 0 else mp.mpf(2 * level - 1) / (2 * (levels - 1))
    hi = mp.inf if level == levels - 1 else mp.mpf(2 * level + 1) / (2 * (levels - 1))
    return lo, hi


def mp_gaussian_log_mass(mean, std, level):
    """log P(lo < X < hi), X ~ N(mean, std^2), in 50-digit arithmetic; each tail by its own erfc so
    the reference never subtracts two numbers close to 1."""
    with mp.workdps(50):
        lo, hi = level_edges(level)
        a, b = (lo - mean) / std, (hi - mean) / std
        if a + b > 0:
            mass = (mp.erfc(a / mp.sqrt(2)) - mp.erfc(b / mp.sqrt(2))) / 2
        else:
            mass = (mp.erfc(-b / mp.sqrt(2)) - mp.erfc(-a / mp.sqrt(2))) / 2
        return float(mp.log(mass))


def mp_beta_log_mass(alpha, beta, level):
    """log of the Beta(alpha, beta) mass of a grey level's interval (clipped to [0, 1]), in 50-digit
    arithmetic; above the mean through the mirror image Beta(beta, alpha) on [1 - hi, 1 - lo]."""
    with mp.workdps(50):
        lo, hi = (min(max(e, mp.mpf(0)), mp.mpf(1)) for e in level_edges(level))
        if (lo + hi) / 2 > mp.mpf(alpha) / (alpha + beta):
            mass = mp.betainc(beta, alpha, 1 - hi, 1 - lo, regularized=True)
        else:
            mass = mp.betainc(alpha, beta, lo, hi, regularized=True)
        return float(mp.log(mass))


def old_cdf_difference(lik, p, x, levels=256):
    """The former discrete_log_prob: log(CDF(hi) - CDF(lo)) floored at 1e-300."""
    v = torch.round(x.double() * (levels - 1))
    lo, hi = (v - 0.5) / (levels - 1), (v + 0.5) / (levels - 1)
    if isinstance(lik, Gaussian):
        m, var = lik.split(p.double())
        cdf_hi = torch.where(hi >= 1.0, 1.0, torch.special.ndtr((hi - m) / var.sqrt()))
        cdf_lo = torch.where(lo <= 0.0, 0.0, torch.special.ndtr((lo - m) / var.sqrt()))
        mass = cdf_hi - cdf_lo
    else:
        alpha, beta = (t.numpy() for t in lik.split(p.double()))
        lo, hi = lo.clamp(0, 1).numpy(), hi.clamp(0, 1).numpy()
        mass = torch.from_numpy(betainc(alpha, beta, hi) - betainc(alpha, beta, lo))
    return torch.log(mass.clamp_min(1e-300)).flatten(1).sum(1)


# (mean, std, grey level, whether the old CDF difference rounded the mass to 0). torch's float64
# ndtr already returns 0 below about -8.3, so the old formula lost the lower tail as well.
GAUSSIAN_TAILS = [(0.05, 0.002, 255, True), (0.05, 0.002, 153, True), (0.99, 0.002, 0, True),
                  (0.05, 0.0317, 255, True), (0.3, 0.05, 200, True), (0.99, 0.0317, 0, True),
                  (0.5, 0.1, 0, False), (0.5, 0.1, 255, False)]
# (alpha, beta, grey level, old floored): the upper tail of Beta(0.05, 80), the lower of Beta(80, 0.05),
# and two levels whose mass is below float64's range even on the right side (log-space path).
BETA_TAILS = [(0.05, 80.0, 230, True), (0.05, 80.0, 255, True), (80.0, 0.05, 0, False), (80.0, 0.05, 26, False),
              (150.0, 2.0, 0, True), (2.0, 150.0, 255, True), (2000.0, 0.02, 153, True)]


@pytest.mark.parametrize("mean, std, level, old_floored", GAUSSIAN_TAILS)
def test_gaussian_discrete_log_prob_far_in_either_tail(mean, std, level, old_floored):
    lik = Gaussian(min_variance=1e-6)
    p, x = gaussian_pixel(lik, mean, std), torch.full((1, 1, 1, 1), level / 255, dtype=torch.float64)
    m, v = (t.item() for t in lik.split(p))
    want = mp_gaussian_log_mass(m, math.sqrt(v), level)
    got = lik.discrete_log_prob(p, x)
    assert got.dtype == torch.float32 and got.shape == (1,)
    assert got.item() == pytest.approx(want, rel=1e-6)
    old = old_cdf_difference(lik, p, x).item()
    assert (old == pytest.approx(OLD_FLOOR)) == old_floored      # the bug this guards against
    if old_floored:
        assert abs(want - OLD_FLOOR) > 10


@pytest.mark.parametrize("alpha, beta, level, old_floored", BETA_TAILS)
def test_beta_discrete_log_prob_far_in_either_tail(alpha, beta, level, old_floored):
    lik = Beta()
    p, x = beta_pixel(lik, alpha, beta), torch.full((1, 1, 1, 1), level / 255, dtype=torch.float64)
    a, b = (t.item() for t in lik.split(p))
    want = mp_beta_log_mass(a, b, level)
    got = lik.discrete_log_prob(p, x)
    assert got.dtype == torch.float32 and got.shape == (1,)
    assert got.item() == pytest.approx(want, rel=1e-6)
    old = old_cdf_difference(lik, p, x).item()
    assert (old == pytest.approx(OLD_FLOOR)) == old_floored
    if old_floored:
        assert abs(want - OLD_FLOOR) > 10


def test_discrete_log_prob_matches_scipy_stats_pixel_by_pixel():
    """Many pixels at once, moderate to extreme parameters, against float64 scipy.stats references:
    log(cdf(hi) - cdf(lo)) below the mean, log(sf(lo) - sf(hi)) above it (as logs of differences)."""
    g = torch.Generator().manual_seed(0)
    n = 4000
    x = torch.randint(0, 256, (n, 1, 1, 1), generator=g).double() / 255
    x[:200] = 0.0
    x[200:400] = 1.0
    level = torch.round(x.view(-1) * 255).numpy()
    lo = np.where(level == 0, -np.inf, (level - 0.5) / 255)
    hi = np.where(level == 255, np.inf, (level + 0.5) / 255)

    lik = Gaussian(min_variance=1e-5)
    p = torch.randn(n, 2, 1, 1, generator=g, dtype=torch.float64) * 4
    m, s = (t.view(-1).numpy() for t in (lik.split(p)[0], lik.split(p)[1].sqrt()))
    with np.errstate(divide="ignore"):                    # log(0) in the branch not taken
        below = norm.logcdf(hi, m, s) + np.log1p(-np.exp(norm.logcdf(lo, m, s) - norm.logcdf(hi, m, s)))
        above = norm.logsf(lo, m, s) + np.log1p(-np.exp(norm.logsf(hi, m, s) - norm.logsf(lo, m, s)))
    want = np.where((level == 255) | ((level > 0) & (level / 255 > m)), above, below)
    got = lik.discrete_log_prob(p, x).double().numpy()
    assert (want < -100).sum() > 100 and want.min() < -5000   # the comparison reaches deep into the tails
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

    lik = Beta()                                          # concentrations log-uniform on [0.02, 100]
    conc = torch.exp(torch.empty(n, 2, 1, 1, dtype=torch.float64).uniform_(math.log(0.02), math.log(100), generator=g))
    p = (conc - lik.min_concentration).expm1().log()      # inverse softplus
    a, b = (t.view(-1).numpy() for t in lik.split(p))
    lo, hi = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
    with np.errstate(divide="ignore"):
        below = np.log(beta_dist.cdf(hi, a, b) - beta_dist.cdf(lo, a, b))
        above = np.log(beta_dist.sf(lo, a, b) - beta_dist.sf(hi, a, b))
    want = np.where((lo + hi) / 2 > a / (a + b), above, below)
    got = lik.discrete_log_prob(p, x).double().numpy()
    assert np.isfinite(want).all() and (want < -100).sum() > 100 and want.min() < -400
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("lik, p, unimodal", [
    (Gaussian(min_variance=1e-6), lambda lik: gaussian_pixel(lik, 0.05, 0.002), True),
    (Gaussian(min_variance=1e-6), lambda lik: gaussian_pixel(lik, 0.999, 0.01), True),
    (Beta(), lambda lik: beta_pixel(lik, 0.05, 80.0), True),
    (Beta(), lambda lik: beta_pixel(lik, 80.0, 0.05), True),
    (Beta(), lambda lik: beta_pixel(lik, 150.0, 2.0), True),
    (Beta(), lambda lik: beta_pixel(lik, 0.02, 0.02), False),
], ids=["gauss-low", "gauss-high", "beta-0.05-80", "beta-80-0.05", "beta-150-2", "beta-0.02-0.02"])
def test_discrete_probabilities_sum_to_one_at_extreme_parameters(lik, p, unimodal):
    p = p(lik)
    levels = (torch.arange(256, dtype=torch.float64) / 255.0).view(256, 1, 1, 1)
    log_p = lik.discrete_log_prob(p.expand(256, -1, -1, -1), levels).double()
    assert torch.isfinite(log_p).all()
    assert not (log_p - OLD_FLOOR).abs().lt(1e-3).any()          # no level sits on the old floor
    assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-5)
    if unimodal:                                                   # rises to one mode, then falls
        steps = torch.sign(log_p.diff())
        first_fall = int((steps < 0).nonzero()[0]) if (steps < 0).any() else len(steps)
        assert (steps[first_fall:] < 0).all() and (steps[:first_fall] > 0).all()


def test_discrete_log_prob_shapes_and_device():
    for lik in (Gaussian(), Beta()):
        p, x = params(lik, n=5), torch.round(grey(n=5) * 255) / 255
        out = lik.discrete_log_prob(p, x)
        assert out.shape == (5,) and out.dtype == torch.float32 and out.device == p.device
        assert torch.isfinite(out).all()


# --- sampling and generators ------------------------------------------------------------------------

ALL = ["bernoulli", "gaussian", "beta", "categorical"]


def draw(lik, seed, n=4):
    return lik.sample(params(lik, n=n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ALL)
def test_sample_is_reproducible_from_its_generator(name):
    lik = make_likelihood(name)
    torch.manual_seed(1)
    first = draw(lik, 7)
    torch.manual_seed(2)                           # a different global RNG state, and advanced:
    torch.rand(1000)                               # the draws must not depend on it
    again = draw(lik, 7)
    assert torch.equal(first, again)
    assert not torch.equal(first, draw(lik, 8))
    assert first.shape == (4, 1, 28, 28) and first.min() >= 0 and first.max() <= 1


@pytest.mark.parametrize("name", ALL)
def test_sample_without_generator_uses_the_global_rng(name):
    lik = make_likelihood(name)
    p = params(lik)
    torch.manual_seed(3)
    a = lik.sample(p)
    torch.manual_seed(3)
    assert torch.equal(a, lik.sample(p))


@pytest.mark.parametrize("alpha, beta", [(2.0, 5.0), (0.3, 0.7), (40.0, 0.5)])
def test_beta_samples_have_the_beta_mean_and_variance(alpha, beta):
    lik, n = Beta(), 200_000
    p = beta_pixel(lik, alpha, beta).float().expand(1, 2, 1, n)
    x = lik.sample(p, generator=torch.Generator().manual_seed(0)).double().view(-1)
    a, b = (t.view(-1)[0].double().item() for t in lik.split(p))
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    sq = (x - x.mean()) ** 2
    assert abs(x.mean().item() - mean) < 5 * math.sqrt(var / n)
    assert abs(sq.mean().item() - var) < 5 * sq.std().item() / math.sqrt(n)
    assert kstest(x.numpy(), "beta", args=(a, b)).pvalue > 1e-3


def test_bernoulli_sample_frequencies():
    p = torch.tensor([-2.0, 0.0, 3.0]).view(1, 3, 1, 1).expand(50_000, 3, 1, 1)
    x = Bernoulli().sample(p, generator=torch.Generator().manual_seed(0))
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(x.mean(0).view(-1), torch.sigmoid(torch.tensor([-2.0, 0.0, 3.0])), atol=0.01)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ALL)
def test_cpu_generator_with_cuda_parameters(name):
    lik = make_likelihood(name)
    p = params(lik)
    got = lik.sample(p.cuda(), generator=torch.Generator().manual_seed(5))
    want = lik.sample(p, generator=torch.Generator().manual_seed(5))
    assert got.device.type == "cuda" and got.shape == want.shape
    assert (got.cpu() - want).abs().le(1e-4).double().mean() > 0.999   # the same draws, made on the CPU


def test_gaussian_level_narrower_than_rounding_gets_density_times_width():
    """A standard deviation of 1e15 puts both edges of a level at the same log-CDF: the difference
    is 0, and the level falls back to log(density at its midpoint * width)."""
    lik = Gaussian()
    p = torch.tensor([0.0, 1e30], dtype=torch.float64).view(1, 2, 1, 1).expand(3, 2, 1, 1)
    x = torch.tensor([0.0, 100 / 255, 1.0], dtype=torch.float64).view(3, 1, 1, 1)
    got = lik.discrete_log_prob(p, x).double()
    std = math.sqrt(1e30 + 1e-3)
    z_mid = (100 / 255 - 0.5) / std
    midpoint = -0.5 * math.log(2 * math.pi) - 0.5 * z_mid ** 2 - math.log(std) - math.log(255)
    assert got[1].item() == pytest.approx(midpoint, rel=1e-6)
    assert got[0].item() == pytest.approx(math.log(0.5), rel=1e-6)     # the end levels: half the mass each
    assert got[2].item() == pytest.approx(math.log(0.5), rel=1e-6)
