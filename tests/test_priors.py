"""Priors p(z): closed forms against Monte Carlo, the flow's invertibility and density, and the
VAE's estimators going through the prior."""
import math

import pytest
import torch

from helpers import metrics
from helpers.models import VAE
from helpers.priors import DiagonalGaussian, RealNVP, StandardNormal, make_prior, standard_normal_kl


def test_standard_normal_matches_torch_distributions_and_has_no_parameters():
    prior = StandardNormal(5)
    z = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    want = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert torch.allclose(prior.log_prob(z), want, atol=1e-5)
    assert list(prior.parameters()) == [] and prior.analytic_kl
    a = prior.sample(4, torch.Generator().manual_seed(1))
    assert torch.equal(a, torch.randn(4, 5, generator=torch.Generator().manual_seed(1)))


def shifted_prior(latent=4):
    prior = DiagonalGaussian(latent)
    with torch.no_grad():
        prior.mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0][:latent]))
        prior.log_std.copy_(torch.tensor([0.0, 0.3, -0.5, 0.7][:latent]))
    return prior


def test_monte_carlo_kl_of_a_shifted_scaled_prior_matches_the_closed_form():
    prior = shifted_prior()
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(3, 4, generator=g), 0.5 * torch.randn(3, 4, generator=g)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(prior.mean.detach(), prior.log_std.detach().exp())
    exact = torch.distributions.kl_divergence(q, p).sum(1)                     # (3,)
    n = 200_000
    z = mu + torch.exp(0.5 * logvar) * torch.randn(n, 3, 4, generator=g)
    mc = prior.kl(mu.expand(n, 3, 4), logvar.expand(n, 3, 4), z).detach()     # (n, 3)
    stderr = mc.std(0) / math.sqrt(n)
    assert ((mc.mean(0) - exact).abs() < 4 * stderr).all()


def test_vae_with_a_learnable_prior_uses_it_in_kl_sampling_and_estimators():
    torch.manual_seed(0)
    vae = VAE(channels=1, latent_dim=4, width=4, prior="diagonal_gaussian").eval()
    with torch.no_grad():
        vae.prior.mean.copy_(shifted_prior().mean)
        vae.prior.log_std.copy_(shifted_prior().log_std)
    x = (torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    mu, logvar = vae.posterior(x)
    p = torch.distributions.Normal(vae.prior.mean.detach(), vae.prior.log_std.detach().exp())
    exact_kl = torch.distributions.kl_divergence(torch.distributions.Normal(mu, torch.exp(0.5 * logvar)), p).sum(1)
    kls = torch.stack([vae.elbo_terms(x, torch.Generator().manual_seed(s))["kl"] for s in range(4000)]).detach()
    assert ((kls.mean(0) - exact_kl).abs() < 4 * kls.std(0) / math.sqrt(4000)).all()
    # samples come from the prior: their codes have the prior's mean
    z = vae.prior.sample(50_000, torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), vae.prior.mean.detach(), atol=0.05)
    # the estimators use this prior: each equals its definition written out by hand
    z = metrics.sample_posterior(vae, x, 64, generator=torch.Generator().manual_seed(2))       # (3, 64, 4)
    log_q = torch.distributions.Normal(mu[:, None], torch.exp(0.5 * logvar)[:, None]).log_prob(z).sum(-1)
    log_lik = torch.stack([vae.log_px_given_z(x[i].expand(64, 1, 28, 28), z[i]) for i in range(3)])
    by_hand = torch.logsumexp(log_lik + p.log_prob(z).sum(-1) - log_q, 1) - math.log(64)
    assert torch.allclose(metrics.importance_log_likelihood(vae, x.reshape(3, -1), z), by_hand, atol=1e-3)
    codes = vae.prior.sample(500, torch.Generator().manual_seed(3))
    log_lik = torch.stack([vae.log_px_given_z(x[i].expand(500, 1, 28, 28), codes) for i in range(3)])
    by_hand = torch.logsumexp(log_lik, 1) - math.log(500)
    fast = metrics.prior_log_px_bernoulli(vae, x, 500, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(fast, by_hand, atol=1e-3)


def test_realnvp_is_invertible_with_the_right_log_determinant():
    torch.manual_seed(0)
    flow = RealNVP(5, n_layers=4, hidden=16)
    for p in flow.parameters():                      # move away from the identity initialisation
        p.data.add_(0.3 * torch.randn_like(p))
    z = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    u, log_det = flow(z)
    assert torch.allclose(flow.inverse(u), z, atol=1e-5)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], z[i])
        assert torch.allclose(log_det[i], torch.linalg.slogdet(jac)[1], atol=1e-4)


def test_realnvp_density_integrates_to_one_on_a_2d_grid():
    torch.manual_seed(0)
    flow = RealNVP(2, n_layers=4, hidden=16)
    for p in flow.parameters():
        p.data.add_(0.2 * torch.randn_like(p))
    side = torch.linspace(-10, 10, 801)
    grid = torch.cartesian_prod(side, side)
    with torch.no_grad():
        mass = flow.log_prob(grid).exp().sum() * (side[1] - side[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=0.01)


def test_realnvp_samples_follow_its_density():
    torch.manual_seed(0)
    flow = RealNVP(2, n_layers=3, hidden=8)
    with torch.no_grad():
        z = flow.sample(5, torch.Generator().manual_seed(0))
        u, log_det = flow(z)
        again = flow.sample(5, torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    assert torch.allclose(u, torch.randn(5, 2, generator=torch.Generator().manual_seed(0)), atol=1e-5)


def test_unknown_prior_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown prior 'vamp'"):
        make_prior("vamp", 3)
    with pytest.raises(ValueError, match="latent_dim"):
        StandardNormal(0)
    assert torch.allclose(standard_normal_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))
