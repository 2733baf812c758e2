"""Helpers that notebook cells call instead of carrying their own logic: each against an
independent reference (torch.distributions, closed forms, a direct loop)."""
import math

import pytest
import torch

from helpers import latent, metrics, settings
from helpers.likelihoods import make_likelihood
from helpers.models import VAE
from helpers.recipes import kl_per_dimension


def test_unit_gaussian_with_sigma_is_normal_with_that_sd():
    lik = make_likelihood("unit_gaussian", sigma=0.2)
    params = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    reference = torch.distributions.Normal(torch.sigmoid(params), 0.2).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(lik.log_prob(params, x), reference, atol=1e-4)
    assert lik.config() == {"sigma": 0.2} and make_likelihood("unit_gaussian").config() == {}
    for bad in (0.0, -1.0, float("nan"), float("inf"), "0.2"):
        with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
            make_likelihood("unit_gaussian", sigma=bad)


def test_kl_per_dimension_against_torch_distributions():
    vae = VAE(channels=3, latent_dim=5, width=4, likelihood="unit_gaussian", arch="dcgan", image_size=32).eval()
    x = torch.rand(7, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    kl = kl_per_dimension(vae, x, batch=3)
    with torch.no_grad():
        mu, logvar = vae.posterior(x)
    reference = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * logvar).exp()),
                                                  torch.distributions.Normal(0.0, 1.0)).mean(0)
    assert kl.shape == (5,) and torch.allclose(kl, reference, atol=1e-5)


def test_moment_kl_against_the_gaussian_kl():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(4000, 3, generator=g) @ torch.tensor([[1.5, 0.0, 0.0], [0.3, 0.7, 0.0], [0.0, 0.2, 1.1]]) + 0.4
    mean, cov = u.double().mean(0), torch.cov(u.double().T)
    reference = torch.distributions.kl_divergence(torch.distributions.MultivariateNormal(mean, cov),
                                                  torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64),
                                                                                         torch.eye(3, dtype=torch.float64)))
    assert latent.moment_kl(u) == pytest.approx(reference.item(), rel=1e-6)
    with pytest.raises(ValueError, match="N > L"):
        latent.moment_kl(torch.randn(3, 3))


class Decoder(torch.nn.Module):
    """decode(z) = sigmoid of a fixed linear map: a tiny model with the interface of a VAE's decoder."""

    def __init__(self, latent_dim=4):
        super().__init__()
        self.lin = torch.nn.Linear(latent_dim, 28 * 28)
        torch.nn.init.normal_(self.lin.weight, generator=torch.Generator().manual_seed(0))

    def decode(self, z):
        return torch.sigmoid(self.lin(z)).view(len(z), 1, 28, 28)


def test_dimension_sweeps_against_a_direct_loop():
    model = Decoder()
    z = torch.randn(4, generator=torch.Generator().manual_seed(1))
    eps = torch.tensor([-1.0, 0.0, 2.0])
    sweeps = latent.dimension_sweeps(model, z, [2, 0], eps)
    assert list(sweeps) == [2, 0]
    for i, images in sweeps.items():
        for k, e in enumerate(eps):
            shifted = z.clone()
            shifted[i] += e
            assert torch.allclose(images[k], model.decode(shifted[None])[0])
    assert torch.allclose(sweeps[2][1], model.decode(z[None])[0])         # eps = 0 is the sample itself


class ConstantConfidence:
    """A verifier stand-in whose confidence is an image's mean pixel."""

    def classify(self, images):
        return type("R", (), {"confidence": images.flatten(1).mean(1)})()


def test_interpolation_confidence_ends_and_data_path():
    model = Decoder()
    g = torch.Generator().manual_seed(2)
    z_a, z_b = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    out = latent.interpolation_confidence(model, ConstantConfidence(), z_a, z_b, torch.tensor([0.0, 0.5, 1.0]))
    x_a, x_b = model.decode(z_a), model.decode(z_b)
    assert out["latent"][0] == pytest.approx(x_b.mean().item(), abs=1e-6)   # alpha = 0 is z_b
    assert out["latent"][2] == pytest.approx(x_a.mean().item(), abs=1e-6)
    assert out["data"][1] == pytest.approx((0.5 * x_a + 0.5 * x_b).mean().item(), abs=1e-6)
    assert out["latent"][0] == pytest.approx(out["data"][0], abs=1e-6)


def test_interpolation_paths_score_every_alpha_with_every_function():
    model = Decoder()
    g = torch.Generator().manual_seed(3)
    z_a, z_b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    alphas = torch.tensor([0.0, 0.25, 1.0])
    out = latent.interpolation_paths(model, z_a, z_b, alphas, {"mean": lambda x: x.flatten(1).mean(1),
                                                               "max": lambda x: x.flatten(1).max(1).values})
    for k, a in enumerate(alphas.tolist()):
        mixed = model.decode(a * z_a + (1 - a) * z_b)
        assert out["latent"]["max"][k] == pytest.approx(mixed.flatten(1).max(1).values.mean().item(), abs=1e-6)
    fade = 0.25 * model.decode(z_a) + 0.75 * model.decode(z_b)
    assert out["data"]["mean"][1] == pytest.approx(fade.mean().item(), abs=1e-6)
    with pytest.raises(ValueError, match="equal shape"):
        latent.interpolation_paths(model, z_a, z_b[:3], alphas, {})


def test_distinct_confident_pairs_join_the_most_confident_samples_of_different_digits():
    confidence = torch.tensor([0.9, 0.95, 0.5, 0.8, 0.99, 0.7])
    digit = torch.tensor([3, 3, 1, 3, 3, 2])
    assert latent.distinct_confident_pairs(confidence, digit, k=2) == [(4, 5), (1, 2)]
    assert latent.distinct_confident_pairs(confidence, digit, k=3)[2] == (0, 3)    # only 3s left: a pair of 3s
    with pytest.raises(ValueError, match="cannot find 4 pairs among 6"):
        latent.distinct_confident_pairs(confidence, digit, k=4)


def test_the_comparison_reads_each_quantity_as_its_own_notebook_prints_it():
    from helpers import checkpoints, recipes
    rows = {r["checkpoint"]: r for r in recipes.comparison.stacked_rows()}
    gan = recipes.stored_evaluation("dcgan_stacked")
    assert rows["dcgan_stacked"]["modes"] == gan["modes"]["mean"] and rows["dcgan_stacked"]["kl"] == gan["kl"]["mean"]
    assert rows["vae_mono"]["kl"] == recipes.stored_evaluation("vae_mono")["channelwise_samples"]["kl"]
    elbo, log_px, protocol = recipes.comparison.stored_likelihood("vae_mono_flow")
    pc = recipes.stored_evaluation("vae_mono_flow", "prior_comparison")
    assert (elbo, log_px, protocol) == (pc["test_elbo"]["mean"], pc["test_log_px"]["mean"], "a")
    assert recipes.comparison.stored_likelihood("dcgan_mnist") == (None, None, "")
    present, missing = recipes.comparison.available(recipes.comparison.MNIST_MODELS)
    assert not missing and [m.name for m in present] == [m.name for m in recipes.comparison.MNIST_MODELS]
    assert all(checkpoints.exists(m.name) for m in present)


def test_classified_balance_of_independent_balanced_channels_is_the_sampling_floor():
    from helpers.verification import Classification
    g = torch.Generator().manual_seed(4)
    digits = torch.randint(0, 10, (26_000, 3), generator=g)
    digits[:, 0] = torch.where(digits[:, 0] == 4, torch.tensor(3), digits[:, 0])   # channel 0: no 4s, twice the 3s
    result = Classification(digits=digits, digit_confidence=torch.ones(26_000, 3))
    out = metrics.classified_balance(result)
    assert out["channel_kl"][0] == pytest.approx(0.2 * math.log(2), abs=0.01)         # 0.8 of mass at 0.1, 0.2 at 0.2
    assert out["channel_kl"][1] < 0.002 and out["most"][0] == 3 and out["least"][0] == 4
    assert out["measured"] == pytest.approx(result.kl_to_uniform())
    assert abs(out["dependence"]) < 4 * out["independent_sd"] + 0.005                # independent by construction


def test_top_confusions_and_format_optional():
    cm = torch.tensor([[5, 2, 0], [7, 9, 1], [0, 3, 4]])
    assert metrics.top_confusions(cm, k=2) == [(1, 0, 7), (2, 1, 3)]
    assert metrics.top_confusions(torch.eye(3, dtype=torch.long) * 4) == []
    assert metrics.format_optional(None, "6.3f") == "     -" and metrics.format_optional(0.25, "6.3f") == " 0.250"


def test_kl_decomposition_of_independent_channels():
    freqs = [[0.1] * 10, [0.2, 0.0] + [0.1] * 8, [0.1] * 10]
    channel_kl = [0.0, 0.2 * math.log(2.0), 0.0]
    summary = {"digit_frequencies": freqs, "channel_kl": channel_kl, "kl": 0.2, "n": 5000}
    d = metrics.kl_decomposition(summary, draws=4)
    assert d["channel_sum"] == pytest.approx(sum(channel_kl))
    # 900 equally likely classes drawn 5,000 times: the simulated KL is the channel KL plus a small excess
    assert d["channel_sum"] < d["independent"] < d["channel_sum"] + 0.15
    assert d["dependence"] == pytest.approx(0.2 - d["independent"])


def test_estimator_spread_matches_a_direct_loop():
    vae = VAE(channels=1, latent_dim=3, width=4).eval()
    x = (torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    spread = metrics.estimator_spread(vae, x, draws=20, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    for i in range(3):
        direct = metrics.elbo_estimators(vae, x[i:i + 1].expand(20, -1, -1, -1), generator=g)
        for key, v in direct.items():
            assert spread[key][i].item() == pytest.approx(v.std().item(), rel=1e-5)


def test_confirm_reports_and_stops_unless_smoke(monkeypatch, capsys):
    good = metrics.check_agreement("a", 1.0, 1.0, 0.1)
    bad = metrics.check_agreement("b", 2.0, 1.0, 0.1)
    assert metrics.confirm(good, metrics.Reproduction("c", True))
    assert "a: live 1.000" in capsys.readouterr().out
    monkeypatch.delenv("DGM_SMOKE", raising=False)
    with pytest.raises(AssertionError, match="1 of 2 live recomputations disagree"):
        metrics.confirm(good, bad)
    monkeypatch.setenv("DGM_SMOKE", "1")
    assert not metrics.confirm(bad, metrics.Reproduction("d", False))
    out = capsys.readouterr().out
    assert "DOES NOT AGREE" in out and "d: NOT REPRODUCED" in out and "smoke run: these live numbers" in out


def test_subset_check_and_live_accuracy_check():
    values = torch.arange(100, dtype=torch.float64)
    stored = {"mean": values.mean().item(), "sd": values.std().item(), "live_mean": values[:10].mean().item()}
    check = metrics.subset_check("x", values[:10], stored, 100, tolerance=1e-9)
    assert check.reproduced and "reproduces the stored mean" in str(check)
    assert check.agreement.se == pytest.approx(metrics.subset_difference_se(stored["sd"], 10, 100))


def test_smoke_banner(monkeypatch, capsys):
    monkeypatch.setenv("DGM_SMOKE", "1")
    settings.smoke_banner()
    assert capsys.readouterr().out.strip() == "smoke run: two batches, numbers are not the shipped ones"
    monkeypatch.setenv("DGM_SMOKE", "0")
    settings.smoke_banner()
    assert capsys.readouterr().out == ""


def test_grouped_bars_draws_each_mean_with_its_error_and_checks_its_groups():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from helpers import plotting
    values = {"a": {"x": (0.5, 0.01), "y": (0.7, 0.02)}, "b": {"x": (0.2, 0.03), "y": (0.9, 0.0)}}
    ax = plotting.grouped_bars(values, reference=(0.95, "ref"), ylim=(0, 1))
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == [0.2, 0.5, 0.7, 0.9]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y"]
    assert any(line.get_ydata()[0] == 0.95 for line in ax.get_lines())
    plt.close("all")
    with pytest.raises(ValueError, match="every series needs the groups"):
        plotting.grouped_bars({"a": {"x": (1, 0)}, "b": {"y": (1, 0)}})
    with pytest.raises(ValueError, match="at least one series"):
        plotting.grouped_bars({})


def test_sample_statistics_against_direct_computations():
    """comparison.sample_statistics: sharpness and pixel diversity from scipy, the confident fraction
    and the KL from the classifier's softmax directly."""
    import numpy as np
    from scipy.ndimage import laplace
    from scipy.spatial.distance import pdist
    from helpers.recipes import comparison

    class Features:                                       # a stand-in FIDReference: features = mean colour
        def features_of(self, images):
            return images.mean((2, 3))

    with settings.forked_rng(0):
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10)).eval()
    images = torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    real = torch.tensor([0, 1, 1, 2, 3, 3, 3, 4, 5, 6, 7, 8, 9, 9])
    out = comparison.sample_statistics(images, net, Features(), real)
    with torch.no_grad():
        probs = net(images).softmax(1)
    grey = np.tensordot(np.array([0.299, 0.587, 0.114]), images.double().numpy(), axes=([0], [1]))   # (12, 8, 8)
    sharp = np.mean([np.abs(laplace(g)[1:-1, 1:-1]).mean() for g in grey])
    assert out["pixel"] == pytest.approx(pdist(images.flatten(1).double().numpy()).mean(), rel=1e-5)
    assert out["feature"] == pytest.approx(pdist(images.mean((2, 3)).double().numpy()).mean(), rel=1e-5)
    assert out["confident"] == pytest.approx((probs.max(1).values >= 0.8).float().mean().item())
    freq = np.bincount(probs.argmax(1).numpy(), minlength=10) / 12
    ref = np.bincount(real.numpy(), minlength=10) / len(real)
    nz = freq > 0
    assert out["kl"] == pytest.approx(float((freq[nz] * np.log(freq[nz] / ref[nz])).sum()), rel=1e-6)
    assert out["digits"] == np.bincount(probs.argmax(1).numpy(), minlength=10).tolist()
    assert out["sharpness"] == pytest.approx(sharp, rel=1e-5)


def test_readings_title_each_image_with_the_classifiers_digits_and_lowest_confidence():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from helpers import plotting
    from helpers.verification import Classification

    class Fixed:                       # a classifier whose reading is known
        def classify(self, images):
            return Classification(digits=torch.tensor([[1, 2, 3], [9, 0, 4]]),
                                  digit_confidence=torch.tensor([[0.9, 0.55, 0.99], [0.7, 0.8, 0.95]]))
    titles = plotting.readings(Fixed(), torch.rand(2, 3, 28, 28))
    assert titles == ["123 (0.55)", "904 (0.70)"]
    fig = plotting.show_rows({"a": torch.rand(2, 3, 28, 28)}, image_titles={"a": titles})
    assert [ax.get_title() for ax in fig.axes[:2]] == titles
    plt.close("all")
