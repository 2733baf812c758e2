
import pytest
import torch

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
