"""`helpers.divergences`: estimators of the JSD and the Wasserstein distance, the gradient penalty,
the grouped MLP, the samplers and the density read off a discriminator, against closed forms."""
import math

import pytest
import numpy as np
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import norm
from torch import nn

from helpers import divergences as dv


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------ gradient penalty

def test_gradient_penalty_of_a_linear_critic_is_the_hand_computed_value():
    """T(x) = w.x + b has gradient w everywhere: the penalty is (||w|| - 1)^2 whatever x, y, a."""
    w = torch.tensor([[3.0, -4.0, 12.0]])                 # ||w|| = 13
    critic = nn.Linear(3, 1)
    with torch.no_grad():
        critic.weight.copy_(w)
        critic.bias.fill_(0.7)
    x, y = torch.randn(64, 3, generator=gen(1)), torch.randn(64, 3, generator=gen(2)) + 5
    gp = dv.gradient_penalty(critic, x, y, gen(3))
    assert gp.shape == ()
    assert gp.item() == pytest.approx((13 - 1) ** 2, rel=1e-5)
    # and its gradient in w is the hand derivative 2 (||w|| - 1) w / ||w||
    gp.backward()
    assert torch.allclose(critic.weight.grad, 2 * 12 * w / 13, rtol=1e-5)
    assert critic.bias.grad is None                      # the bias does not move the gradient


def test_gradient_penalty_on_images_takes_the_norm_over_all_pixels():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 1))
    with torch.no_grad():
        critic[1].weight.fill_(0.25)                      # ||w|| = 0.25 * sqrt(32)
    x, y = torch.rand(5, 2, 4, 4, generator=gen(1)), torch.rand(5, 2, 4, 4, generator=gen(2))
    gp = dv.gradient_penalty(critic, x, y, gen(0))
    assert gp.item() == pytest.approx((0.25 * math.sqrt(32) - 1) ** 2, rel=1e-5)


def test_gradient_penalty_of_grouped_linear_critics_is_one_value_per_group():
    critic = dv.GroupedMLP(3, [2, 1], generator=gen(0))             # one linear layer per group
    with torch.no_grad():
        critic.weights[0].copy_(torch.tensor([[[0.6], [0.8]], [[3.0], [4.0]], [[0.0], [0.5]]]))
    x, y = torch.randn(3, 10, 2, generator=gen(1)), torch.randn(3, 10, 2, generator=gen(2))
    gp = dv.gradient_penalty(critic, x, y, gen(3), sample_dims=2)
    assert torch.allclose(gp, torch.tensor([0.0, 16.0, 0.25]), atol=1e-5)


def test_gradient_penalty_interpolates_with_the_given_generator_only():
    critic = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    x, y = torch.randn(32, 2, generator=gen(1)), torch.randn(32, 2, generator=gen(2))
    state = torch.get_rng_state()
    a = dv.gradient_penalty(critic, x, y, gen(5))
    b = dv.gradient_penalty(critic, x, y, gen(5))
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)                  # the global RNG is untouched


# ------------------------------------------------------------------------------------ objectives

def test_jsd_objective_is_zero_at_d_one_half_and_log2_for_a_perfect_discriminator():
    zeros = torch.zeros(7)
    assert dv.jsd_objective(zeros, torch.zeros(9)).item() == pytest.approx(0.0, abs=1e-7)
    assert dv.jsd_objective(torch.full((5,), 40.0), torch.full((5,), -40.0)).item() == pytest.approx(math.log(2))


def test_jsd_objective_at_the_optimal_discriminator_equals_scipys_jsd():
    """Discrete p, q with samples in exact proportions; at D* = p / (p + q), i.e. logit log(p / q),
    the objective is JSD(p, q) in nats (scipy's jensenshannon is its square root)."""
    p = torch.tensor([0.5, 0.25, 0.25, 0.0])
    q = torch.tensor([0.125, 0.125, 0.25, 0.5])
    atoms_p = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])                # 8 samples in p's proportions
    atoms_q = torch.tensor([0, 1, 2, 2, 3, 3, 3, 3])
    logit = torch.log(p / q)                                        # -inf on atom 3 (p = 0 there)
    value = dv.jsd_objective(logit[atoms_p], logit[atoms_q])
    assert value.item() == pytest.approx(jensenshannon(p.numpy(), q.numpy()) ** 2, rel=1e-6)


def test_objectives_reduce_the_last_dimension_only():
    a, b = torch.randn(4, 3, 10, generator=gen(0)), torch.randn(4, 3, 12, generator=gen(1))
    assert dv.jsd_objective(a, b).shape == (4, 3)
    assert torch.allclose(dv.wasserstein_objective(a, b), a.mean(-1) - b.mean(-1))


# ------------------------------------------------------------------------------------- density

def test_density_formula_recovers_f1_from_the_optimal_discriminator():
    f1 = dv.bimodal_f1()
    x = torch.linspace(-4, 4, 201, dtype=torch.float64)
    f0, f1x = dv.normal_density(x), f1.density(x)
    d_star = f1x / (f1x + f0)
    assert torch.allclose(dv.density_from_discriminator(d_star, f0), f1x, rtol=1e-10)
    assert torch.allclose(dv.density_from_logits(torch.log(f1x / f0), f0), f1x, rtol=1e-10)


def test_mixture_density_matches_scipy_integrates_to_one_and_its_samples_have_its_moments():
    f1 = dv.bimodal_f1()
    x = torch.linspace(-10, 12, 4001, dtype=torch.float64)
    reference = 0.3 * norm.pdf(x.numpy(), -1.5, 0.5) + 0.7 * norm.pdf(x.numpy(), 1.0, 1.3)
    assert torch.allclose(f1.density(x), torch.from_numpy(reference), rtol=1e-10, atol=1e-300)
    assert torch.trapezoid(f1.density(x), x).item() == pytest.approx(1.0, abs=1e-8)
    s = f1.sample(200_000, gen(0)).double()
    mean = 0.3 * -1.5 + 0.7 * 1.0
    var = 0.3 * (0.25 + 2.25) + 0.7 * (1.69 + 1.0) - mean ** 2
    assert s.mean().item() == pytest.approx(mean, abs=0.01)
    assert s.var().item() == pytest.approx(var, abs=0.02)
    assert torch.equal(f1.sample(10, gen(4)), f1.sample(10, gen(4)))
    assert dv.normal_density(torch.tensor(0.0)).item() == pytest.approx(norm.pdf(0.0))


def test_the_sheets_distribution4_density_is_the_derivative_of_its_cdf_and_matches_its_samples():
    """F(y) = Phi(g^-1(y)) (scipy's normal CDF) is the independent reference: its centred difference
    must give the density; the density integrates to 1; sample moments match quadrature."""
    from scipy import integrate
    f4 = dv.SheetDistribution4()
    y = torch.linspace(-5, 5, 2001, dtype=torch.float64)
    x = f4.inverse(y)
    assert torch.allclose(f4.transform(x), y, atol=1e-12)                   # g(g^-1(y)) = y
    h = 1e-5
    cdf = lambda v: torch.from_numpy(norm.cdf(f4.inverse(v).numpy()))       # noqa: E731
    assert torch.allclose(f4.density(y), (cdf(y + h) - cdf(y - h)) / (2 * h), rtol=1e-5, atol=1e-9)
    wide = torch.linspace(-9, 9, 20001, dtype=torch.float64)
    assert torch.trapezoid(f4.density(wide), wide).item() == pytest.approx(1.0, abs=1e-8)
    g = lambda v: np.tanh(2 * v + 1) + 0.75 * v                            # noqa: E731
    mean = integrate.quad(lambda v: g(v) * norm.pdf(v), -12, 12)[0]
    second = integrate.quad(lambda v: g(v) ** 2 * norm.pdf(v), -12, 12)[0]
    s = f4.sample(200_000, gen(0)).double()
    assert s.mean().item() == pytest.approx(mean, abs=0.01)
    assert s.var().item() == pytest.approx(second - mean ** 2, abs=0.02)
    assert torch.equal(f4.sample(10, gen(4)), f4.sample(10, gen(4)))


def test_parallel_lines_sampler():
    thetas = torch.tensor([-0.5, 0.0, 1.0])
    state = torch.get_rng_state()
    x = dv.parallel_lines(thetas, 1000, gen(0))
    assert torch.equal(torch.get_rng_state(), state)
    assert x.shape == (3, 1000, 2)
    assert torch.equal(x[:, :, 0], thetas[:, None].expand(3, 1000))
    assert x[:, :, 1].min() >= 0 and x[:, :, 1].max() < 1
    assert abs(x[:, :, 1].mean().item() - 0.5) < 0.02
    assert torch.equal(x, dv.parallel_lines(thetas, 1000, gen(0)))


# ----------------------------------------------------------------------------------- grouped MLP

def test_grouped_mlp_equals_separate_mlps_with_the_same_weights():
    torch_gen = gen(0)
    separate = []
    for _ in range(4):
        layers = [nn.Linear(3, 16), nn.LeakyReLU(0.2), nn.Linear(16, 16), nn.LeakyReLU(0.2), nn.Linear(16, 2)]
        with torch.no_grad():
            for layer in layers[::2]:
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=torch_gen))
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=torch_gen))
        separate.append(nn.Sequential(*layers))
    grouped = dv.GroupedMLP(4, [3, 16, 16, 2], activation="leaky_relu", generator=gen(9))
    with torch.no_grad():
        for g, mlp in enumerate(separate):
            for l, layer in enumerate(mlp[::2]):
                grouped.weights[l][g] = layer.weight.T
                grouped.biases[l][g, 0] = layer.bias
    x = torch.randn(4, 50, 3, generator=gen(1))
    state = torch.get_rng_state()
    members = [grouped.member(g) for g in range(4)]
    assert torch.equal(torch.get_rng_state(), state)              # member() draws nothing
    out = grouped(x)
    assert out.shape == (4, 50, 2)
    for g, mlp in enumerate(separate):
        assert torch.allclose(out[g], mlp(x[g]), atol=1e-5)
        assert torch.allclose(members[g](x[g]), mlp(x[g]), atol=1e-5)


def test_grouped_mlp_groups_do_not_interact():
    """Group 0's loss gradient does not change when group 1's data changes."""
    model = dv.GroupedMLP(2, [2, 8, 8, 1], generator=gen(0))

    def group0_grads(x):
        model.zero_grad()
        model(x).sum().backward()
        return [w.grad[0].clone() for w in model.weights]
    x = torch.randn(2, 20, 2, generator=gen(1))
    before = group0_grads(x)
    x[1] += 3.0
    after = group0_grads(x)
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_grouped_mlp_init_is_like_nn_linear_and_seeded():
    a = dv.GroupedMLP(5, [2, 32, 1], generator=gen(0))
    b = dv.GroupedMLP(5, [2, 32, 1], generator=gen(0))
    assert all(torch.equal(u, v) for u, v in zip(a.parameters(), b.parameters()))
    assert a.weights[0].abs().max() <= 1 / math.sqrt(2) and a.weights[1].abs().max() <= 1 / math.sqrt(32)
    assert a.weights[0].shape == (5, 2, 32) and a.biases[1].shape == (5, 1, 1)


# ----------------------------------------------------------------------------------- the sweep

def test_a_smoke_sweep_gives_wasserstein_estimates_increasing_with_theta():
    thetas = torch.tensor([-0.6, 0.0, 0.3, 1.0])
    state = torch.get_rng_state()
    r = dv.parallel_lines_sweep(thetas, n_train=512 * 10, n_test=2000, jsd_epochs=10, wd_epochs=6, hidden=16,
                                progress=False, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert r.jsd.shape == r.wd.shape == (4,)
    wd_by_abs = r.wd[[1, 2, 0, 3]]                                  # |theta| = 0, 0.3, 0.6, 1
    assert (wd_by_abs[1:] > wd_by_abs[:-1]).all(), r.wd
    assert abs(r.wd[1].item()) < 0.05 and abs(r.jsd[1].item()) < 0.05        # p = q
    assert (r.jsd[[0, 2, 3]] > r.jsd[1] + 0.01).all() and (r.jsd <= math.log(2)).all(), r.jsd
    assert len(r.wd_history.epochs) == 6 and "train_penalty" in r.wd_history.epochs[0]
    jsd_slope, wd_slope = dv.theta_gradients(r, 1000, gen(1))
    assert wd_slope.shape == jsd_slope.shape == (4,) and wd_slope[3] > 0 > wd_slope[0]    # sign of theta


def test_training_is_reproducible():
    p = dv.parallel_lines(torch.zeros(2), 1024, gen(0))
    q = dv.parallel_lines(torch.tensor([0.5, 1.0]), 1024, gen(1))
    m1, _ = dv.train_critic(p, q, epochs=2, batch_size=256, progress=False, seed=3)
    m2, _ = dv.train_critic(p, q, epochs=2, batch_size=256, progress=False, seed=3)
    assert all(torch.equal(u, v) for u, v in zip(m1.parameters(), m2.parameters()))


# --------------------------------------------------------------------------------- bad input

def test_bad_input_gives_clear_errors():
    p = torch.rand(2, 100, 2, generator=gen(0))
    with pytest.raises(ValueError, match=r"\(G, N, D\).*got \(100, 2\)"):
        dv.train_discriminator(p[0], p[1], progress=False)
    with pytest.raises(ValueError, match=r"same shape.*\(2, 100, 2\) and \(2, 50, 2\)"):
        dv.train_critic(p, p[:, :50], progress=False)
    with pytest.raises(ValueError, match="float tensor"):
        dv.jsd_estimate(dv.GroupedMLP(2, [2, 1], generator=gen(0)), p.long(), p.long())
    with pytest.raises(ValueError, match=r"expects input of shape \(G, N, in\) = \(2, N, 2\), got \(3, 100, 2\)"):
        dv.GroupedMLP(2, [2, 4, 1], generator=gen(0))(torch.rand(3, 100, 2, generator=gen(1)))
    with pytest.raises(ValueError, match="1-D tensor"):
        dv.parallel_lines(torch.zeros(2, 2), 10, gen(0))
    with pytest.raises(ValueError, match="1-D tensor"):
        dv.parallel_lines_sweep(torch.tensor(0.5), progress=False)
    with pytest.raises(ValueError, match="same shape"):
        dv.gradient_penalty(nn.Linear(2, 1), torch.rand(4, 2), torch.rand(5, 2), gen(0))
    with pytest.raises(ValueError, match="one value per sample"):
        dv.gradient_penalty(nn.Linear(2, 3), torch.rand(4, 2), torch.rand(4, 2), gen(0))
    with pytest.raises(ValueError, match="same shape"):
        dv.density_from_discriminator(torch.rand(5), torch.rand(6))
    with pytest.raises(ValueError, match="activation must be one of"):
        dv.GroupedMLP(2, [2, 1], activation="swish", generator=gen(0))
    with pytest.raises(ValueError, match="optimizer must be"):
        dv.train_discriminator(p, p, optimizer="rmsprop", progress=False)
    with pytest.raises(ValueError, match="summing to 1"):
        dv.NormalMixture([0.5, 0.6], [0.0, 1.0], [1.0, 1.0])
