import math

import pytest
import torch
from sklearn.metrics import roc_auc_score

from helpers import metrics
from helpers.likelihoods import Bernoulli
from helpers.models import VAE, AutoEncoder, ChannelWise, reparameterize
from helpers.priors import StandardNormal, standard_normal_kl


def tiny_vae(channels=1, latent=3):
    torch.manual_seed(0)
    return VAE(channels=channels, latent_dim=latent, width=4).eval()


def binary_images(n, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, channels, 28, 28, generator=g) < 0.3).float()


@pytest.mark.parametrize("cls", [AutoEncoder, VAE])
@pytest.mark.parametrize("channels", [1, 3])
def test_interface_shapes(cls, channels):
    model = cls(channels=channels, latent_dim=5, width=4).eval()
    x = binary_images(6, channels)
    z = model.encode(x)
    assert z.shape == (6, 5) and model.latent_dim == 5
    for images in (model.decode(z), model.reconstruct(x), model.sample(4)):
        assert images.shape[1:] == (channels, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert model.loss(x)["loss"].dim() == 0


def test_wrong_shapes_and_channel_counts_are_clear_errors():
    model = tiny_vae(channels=1)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        model.encode(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"codes must have shape \(N, 3\)"):
        model.decode(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="one-channel"):
        ChannelWise(VAE(channels=3, latent_dim=2, width=4))
    with pytest.raises(ValueError, match=r"\(N, 3, 28, 28\)"):
        ChannelWise(model).encode(torch.zeros(2, 1, 28, 28))


def test_kl_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g) * 0.5
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(200_000, 3, 4, generator=g)
    log_q = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(standard_normal_kl(mu, logvar), (log_q - log_p).mean(0), rtol=0.02, atol=0.02)


def test_elbo_of_a_known_case_by_hand():
    """Decoder logits all 0 (p = 1/2 per pixel) and q = N(0, I): the ELBO is exactly -784 log 2."""
    model = tiny_vae()
    for p in model.decoder.parameters():
        torch.nn.init.zeros_(p)
    last = model.encoder.net[-1]
    torch.nn.init.zeros_(last.weight), torch.nn.init.zeros_(last.bias)   # mu = 0, logvar = 0
    terms = model.elbo_terms(binary_images(5))
    assert torch.allclose(terms["kl"], torch.zeros(5))
    assert torch.allclose(terms["elbo"], torch.full((5,), -784 * math.log(2)), atol=1e-3)


def test_bernoulli_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 1, 28, 28, generator=g) * 5
    x = binary_images(4)
    x[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.0])
    want = torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(Bernoulli().log_prob(logits, x), want, atol=1e-4)


def test_batched_prior_scorer_agrees_with_the_per_image_loop():
    model = tiny_vae()
    x = binary_images(7)
    fast = metrics.prior_log_px_bernoulli(model, x, n_samples=300, image_chunk=3, sample_chunk=70,
                                          generator=torch.Generator().manual_seed(5))
    slow = metrics.prior_log_px_loop(model, x, n_samples=300, generator=torch.Generator().manual_seed(5),
                                     batch_size=64)
    assert fast.shape == (7,)
    assert torch.allclose(fast, slow, atol=1e-3, rtol=0)


def test_importance_estimate_is_at_least_the_elbo_on_average():
    model = tiny_vae()
    x = binary_images(20)
    iw = metrics.importance_log_px(model, x, n_samples=50, generator=torch.Generator().manual_seed(0))
    assert iw.mean() >= metrics.elbo(model, x, generator=torch.Generator().manual_seed(0)).mean() - 1e-3


def test_estimates_honour_their_generator_and_leave_the_global_rng_alone():
    model = tiny_vae()
    x = binary_images(6)
    state = torch.get_rng_state()
    a = metrics.elbo(model, x, generator=torch.Generator().manual_seed(3))
    torch.rand(100)                                          # advance the global RNG in between
    b = metrics.elbo(model, x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    torch.set_rng_state(state)
    metrics.importance_log_px(model, x, 5, generator=torch.Generator().manual_seed(0))
    metrics.prior_log_px_bernoulli(model, x, 50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)


def test_one_reparameterisation_for_one_and_many_samples():
    mu, logvar = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, math.log(4.0)]])
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0), n_samples=100_000)
    assert z.shape == (1, 100_000, 2)
    assert torch.allclose(z.mean(1), mu, atol=0.03) and torch.allclose(z.std(1), torch.tensor([[1.0, 2.0]]), atol=0.03)
    one = reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    assert one.shape == (1, 2)


def test_discrete_elbo_is_the_elbo_with_the_discrete_likelihood():
    torch.manual_seed(0)
    model = VAE(channels=1, latent_dim=3, width=4, likelihood="categorical", likelihood_kwargs={"bins": 16}).eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    own = metrics.elbo(model, x, generator=torch.Generator().manual_seed(2))
    discrete = metrics.discrete_elbo(model, x, generator=torch.Generator().manual_seed(2))
    # a categorical's bin mass spread evenly over its 16 grey levels: log 16 per pixel less
    assert torch.allclose(discrete, own - 784 * math.log(16), atol=1e-2)


def test_channelwise_shapes_and_independence_of_channels():
    mono = tiny_vae(channels=1, latent=3)
    cw = ChannelWise(mono)
    x = binary_images(4, channels=3)
    z = cw.encode(x)
    assert z.shape == (4, 9) and cw.latent_dim == 9
    assert torch.allclose(z[:, 3:6], mono.encode(x[:, 1:2]))        # G's code is G's mono code
    changed = x.clone()
    changed[:, 0] = 1 - changed[:, 0]                                 # change only the red channel
    r = cw.reconstruct(x)
    r2 = cw.reconstruct(changed)
    assert torch.equal(r[:, 1:], r2[:, 1:]) and not torch.equal(r[:, 0], r2[:, 0])
    assert cw.sample(5).shape == (5, 3, 28, 28)
    ae = AutoEncoder(channels=1, latent_dim=2, width=4).eval()
    per_channel = torch.stack([ae.reconstruction_loss(x[:, c:c + 1]) for c in range(3)], 1).sum(1)
    assert torch.allclose(ChannelWise(ae).reconstruction_loss(x), per_channel)


def test_ae_fitted_code_distribution_is_used_for_sampling():
    ae = AutoEncoder(channels=1, latent_dim=2, width=4).eval()
    ae.fit_code_distribution(binary_images(500))
    z = ae.encode(binary_images(500))
    assert torch.allclose(ae.code_mean, z.mean(0), atol=1e-4)
    assert torch.allclose(ae.code_scale_tril @ ae.code_scale_tril.T, torch.cov(z.T), atol=1e-3)
    with pytest.raises(ValueError, match="prior"):
        ae.sample(3, prior="uniform")


def test_top_k_and_roc_auc_on_constructed_scores():
    scores = torch.tensor([0.1, 0.9, 0.4, 0.8, 0.4])
    positive = torch.tensor([False, True, False, True, True])
    assert metrics.top_k(scores, 2).tolist() == [1, 3]
    assert metrics.roc_auc(scores, positive) == pytest.approx(roc_auc_score(positive, scores))
    assert metrics.roc_auc(torch.tensor([1.0, 2.0]), torch.tensor([False, True])) == 1.0
    assert metrics.roc_auc(torch.ones(4), torch.tensor([True, False, True, False])) == 0.5
    g = torch.Generator().manual_seed(0)
    s, p = torch.randn(1000, generator=g).round(decimals=1), torch.rand(1000, generator=g) < 0.3
    assert metrics.roc_auc(s, p) == pytest.approx(roc_auc_score(p, s))
    with pytest.raises(ValueError, match="k must be"):
        metrics.top_k(scores, 6)
    with pytest.raises(ValueError, match="positive and one negative"):
        metrics.roc_auc(scores, torch.ones(5, dtype=torch.bool))


class LinearGaussian(torch.nn.Module):
    """z ~ N(0, I_L), x | z ~ N(W z + b, s^2 I_D): log p(x) = log N(x; b, W W^T + s^2 I) exactly.
    Its 'encoder' is a deliberately imperfect Gaussian q(z | x) (shifted, too wide)."""

    def __init__(self, d=6, latent=2, s=0.5, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W, self.b, self.s = torch.randn(d, latent, generator=g), torch.randn(d, generator=g), s
        self.image_shape, self.latent_dim, self.channels = (d,), latent, 1
        self.prior = StandardNormal(latent)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def exact_log_px(self, x):
        cov = self.W @ self.W.T + self.s ** 2 * torch.eye(len(self.b))
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self, x):
        # the true posterior mean and variance would be (W^T W + s^2 I)^-1 W^T (x - b), ...;
        # perturb both so the importance weights are not constant
        a = torch.linalg.solve(self.W.T @ self.W + self.s ** 2 * torch.eye(self.latent_dim), self.W.T)
        mu = (x - self.b) @ a.T + 0.3
        return mu, torch.full_like(mu, math.log(0.5))

    def log_px_given_z(self, x, z):
        return torch.distributions.Normal(z @ self.W.T + self.b, self.s).log_prob(x).sum(-1)


def test_importance_sampling_recovers_the_exact_log_likelihood_of_a_linear_gaussian_model():
    model = LinearGaussian()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1)) * 2
    z = metrics.sample_posterior(model, x, 20_000, generator=torch.Generator().manual_seed(2))
    assert z.shape == (5, 20_000, 2)
    estimate = metrics.importance_log_likelihood(model, x, z)
    assert torch.allclose(estimate, model.exact_log_px(x), atol=0.02)
    # K = 1 is the ELBO's estimator: on average it lies below log p(x) (Jensen)
    single = metrics.importance_log_likelihood(model, x.repeat_interleave(20_000, 0), z.reshape(-1, 1, 2))
    assert (single.view(5, -1).mean(1) < model.exact_log_px(x)).all()
    with pytest.raises(ValueError, match=r"\(M, D\)"):
        metrics.importance_log_likelihood(model, x[:3], z)


def test_log_mean_exp_is_stable_for_very_negative_log_weights():
    log_w = torch.tensor([[-10_000.0, -10_000.0], [-20_000.0, -20_000.0 + math.log(3)]])
    out = metrics.log_mean_exp(log_w, dim=1)
    assert torch.isfinite(out).all()
    assert out[0].item() == pytest.approx(-10_000.0)
    assert out[1].item() == pytest.approx(-20_000.0 + math.log(2), abs=1e-2)
    assert torch.log(torch.exp(log_w).mean(1)).isinf().all()        # the naive way underflows


@pytest.mark.parametrize("channels,size,pack", [(1, 28, 1), (3, 28, 2), (3, 32, 1)])
def test_gan_shapes_and_packing(channels, size, pack):
    from helpers.models import GAN
    torch.manual_seed(0)
    gan = GAN(channels=channels, latent_dim=10, width=8, image_size=size, pack=pack)
    x = gan.sample(6, generator=torch.Generator().manual_seed(0))
    assert x.shape == (6, channels, size, size) and x.min() >= 0 and x.max() <= 1
    assert gan.training                                    # sampling gives the mode back
    assert gan.judge(x).shape == (6 // pack,)
    again = gan.sample(6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    if pack > 1:
        with pytest.raises(ValueError, match="multiple of pack"):
            gan.judge(x[:3])
    with pytest.raises(ValueError, match=r"codes must have shape \(N, 10\)"):
        gan.decode(torch.zeros(2, 5))


def test_pacgan_discriminator_sees_the_packed_images_together():
    from helpers.models import GAN
    torch.manual_seed(0)
    gan = GAN(channels=1, latent_dim=4, width=8, pack=2, d_norm=None).eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    logits = gan.judge(x)
    swapped = x[[0, 3, 2, 1]]                             # changes the second image of each pair
    assert not torch.allclose(gan.judge(swapped), logits)
    assert torch.allclose(gan.judge(x[[0, 1, 2, 3]]), logits)
