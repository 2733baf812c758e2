"""Helpers added for notebooks 01-03: Monte-Carlo checks, sample-quality summaries, mode balance,
figures, and the stored heavy evaluations (run here in smoke size)."""
import itertools
import json
import math

import matplotlib
import numpy as np
import pytest
import torch
from scipy.stats import entropy
from sklearn.metrics import confusion_matrix, roc_auc_score
from torch import nn

from helpers import checkpoints, metrics, plotting, recipes
from helpers.data import SMOKE_TEST
from helpers.verification import Classification, Verifier

matplotlib.use("Agg")


class BrightnessNet(nn.Module):
    """Reads digit round(9 * mean brightness) with a confidence set by the image's top-left pixel."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        digit = (x.mean(dim=(1, 2, 3)) * 9).round().long()
        sure = x[:, 0, 0, 0] * 20                      # top-left pixel 1 -> certain, 0 -> unsure
        return torch.nn.functional.one_hot(digit, 10).float() * sure[:, None] + 0 * self.dummy


def classification(digits, confidence) -> Classification:
    return Classification(torch.as_tensor(digits), torch.as_tensor(confidence, dtype=torch.float32))


# --- numbers --------------------------------------------------------------------------------------

def test_proportion_se_and_mean_and_se_match_numpy():
    assert metrics.proportion_se(0.25, 300) == pytest.approx(math.sqrt(0.25 * 0.75 / 300))
    assert metrics.proportion_se(1.0, 10) == 0.0
    with pytest.raises(ValueError):
        metrics.proportion_se(1.5, 10)
    values = np.random.default_rng(0).normal(size=57)
    mean, se = metrics.mean_and_se(torch.from_numpy(values))
    assert mean == pytest.approx(values.mean()) and se == pytest.approx(values.std(ddof=1) / math.sqrt(57))
    with pytest.raises(ValueError):
        metrics.mean_and_se(torch.tensor([1.0]))


def test_subset_difference_se_is_exact_over_all_subsets():
    population = np.array([3.0, -1.0, 4.0, 1.0, -5.0, 9.0])
    n, m = len(population), 2
    # the first m of n values of a random order: every m-subset equally likely
    diffs = [population[list(s)].mean() - population.mean() for s in itertools.combinations(range(n), m)]
    expected = metrics.subset_difference_se(population.std(ddof=1), m, n)
    assert np.sqrt(np.mean(np.square(diffs))) == pytest.approx(expected)
    assert metrics.subset_difference_se(2.0, 10, 10) == 0.0
    with pytest.raises(ValueError):
        metrics.subset_difference_se(1.0, 11, 10)


def test_agreement_verdict_and_line():
    ok = metrics.check_agreement("predictability", 0.70, 0.68, se=0.01)
    assert ok.ok and "agrees" in str(ok) and "+0.020" in str(ok) and "0.030" in str(ok)
    bad = metrics.check_agreement("predictability", 0.75, 0.68, se=0.01)
    assert not bad.ok and "DOES NOT AGREE" in str(bad)
    with pytest.raises(ValueError):
        metrics.check_agreement("x", 1.0, 1.0, se=-1.0)


def test_digit_frequencies_match_bincount():
    rng = np.random.default_rng(1)
    digits = rng.integers(0, 10, size=(500, 3))
    freqs = metrics.digit_frequencies(torch.from_numpy(digits))
    for c in range(3):
        assert np.allclose(freqs[c].numpy(), np.bincount(digits[:, c], minlength=10) / 500)
    with pytest.raises(ValueError):
        metrics.digit_frequencies(torch.tensor([[10]]))


def test_independent_channels_kl_limits():
    g = torch.Generator().manual_seed(0)
    # all mass on one digit per channel: one class of 1000, KL = log 1000 exactly, no spread
    point = torch.zeros(3, 10, dtype=torch.float64)
    point[:, 4] = 1.0
    mean, sd = metrics.independent_channels_kl(point, n=100, draws=3, generator=g)
    assert mean == pytest.approx(math.log(1000)) and sd == pytest.approx(0.0)
    # balanced digits: only the finite-sample excess remains, about (K - 1) / (2 n)
    uniform = torch.full((1, 10), 0.1, dtype=torch.float64)
    mean, _ = metrics.independent_channels_kl(uniform, n=20_000, draws=40, generator=g)
    assert mean == pytest.approx(9 / 40_000, rel=0.3)
    # a skewed single channel: the KL of the distribution itself plus that excess
    skew = torch.tensor([[0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05]], dtype=torch.float64)
    mean, _ = metrics.independent_channels_kl(skew, n=50_000, draws=20, generator=g)
    assert mean == pytest.approx(entropy(skew[0].numpy(), np.full(10, 0.1)) + 9 / 100_000, abs=1e-3)
    with pytest.raises(ValueError):
        metrics.independent_channels_kl(torch.full((1, 10), 0.2), n=10)


def test_generation_summary_on_a_constructed_classification():
    digits = torch.tensor([[1, 2, 3], [1, 2, 3], [4, 0, 9], [7, 7, 7]])
    confidence = torch.tensor([[1.0, 1.0, 1.0], [0.9, 0.9, 0.9], [0.5, 0.9, 0.9], [1.0, 1.0, 0.4]])
    s = metrics.generation_summary(classification(digits, confidence), tolerance=0.5)
    # confidences (products): 1.0, 0.729, 0.405, 0.4 -> two of four pass 0.5, both class 321
    assert s["n"] == 4 and s["predictability"] == 0.5 and s["coverage"] == pytest.approx(1 / 1000)
    assert s["predictability_se"] == pytest.approx(math.sqrt(0.25 / 4))
    assert s["modes_at_tolerance"] == 1 and s["kl_at_tolerance"] == pytest.approx(math.log(1000))
    counts = np.zeros(1000)
    counts[321], counts[904], counts[777] = 2, 1, 1
    assert s["modes"] == 3 and s["kl"] == pytest.approx(entropy(counts, np.ones(1000)))
    for c in range(3):
        freq = np.bincount(digits[:, c].numpy(), minlength=10) / 4
        assert s["channel_kl"][c] == pytest.approx(entropy(freq, np.ones(10)), abs=1e-5)
        assert np.allclose(s["digit_frequencies"][c], freq)
    json.dumps(s)


def test_anomaly_record_matches_sklearn_and_is_json():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(200, generator=g)
    positive = torch.rand(200, generator=g) < 0.2
    scores[positive] += 1.0
    r = metrics.anomaly_record(scores, positive, k=5)
    assert r["roc_auc"] == pytest.approx(roc_auc_score(positive.numpy(), scores.numpy()))
    assert r["top_k"] == torch.argsort(scores, descending=True)[:5].tolist()
    assert r["top_k_fraction"] == positive[r["top_k"]].float().mean().item()
    assert r["mean_score"] == pytest.approx(scores.double().mean().item()) and r["n"] == 200
    json.dumps(r)


# --- sampling and classifying in chunks ---------------------------------------------------------------

class NoiseModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))

    def sample(self, n, generator=None, scale=1.0):
        return torch.rand(n, 1, 28, 28, generator=generator) * scale


def test_draw_samples_draws_chunks_in_turn_from_one_generator():
    model = NoiseModel()
    out = metrics.draw_samples(model, 25, torch.Generator().manual_seed(3), chunk_size=10, scale=0.5)
    g = torch.Generator().manual_seed(3)
    expected = torch.cat([model.sample(k, generator=g, scale=0.5) for k in (10, 10, 5)])
    assert out.shape == (25, 1, 28, 28) and torch.equal(out, expected)
    with pytest.raises(ValueError):
        metrics.draw_samples(model, 0, g)


def test_classify_in_chunks_equals_one_classification():
    verifier = Verifier(BrightnessNet(), batch_size=7)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(23, 3, 1, 1, generator=g) * torch.ones(23, 3, 28, 28)).contiguous()
    x[:, :, 0, 0] = (torch.rand(23, 3, generator=g) > 0.5).float()
    whole, parts = verifier.classify(x), metrics.classify_in_chunks(verifier, x, chunk_size=5)
    assert isinstance(parts, Classification)
    assert torch.equal(whole.digits, parts.digits) and torch.allclose(whole.digit_confidence, parts.digit_confidence)


# --- figures ------------------------------------------------------------------------------------------

def test_confusion_figure_writes_every_cell_and_returns_sklearn_counts():
    g = torch.Generator().manual_seed(0)
    true = torch.randint(0, 4, (60,), generator=g)
    predicted = torch.where(torch.rand(60, generator=g) < 0.8, true, torch.randint(0, 4, (60,), generator=g))
    cm = plotting.confusion_figure(true, predicted, n_classes=4, title="t")
    assert np.array_equal(cm.numpy(), confusion_matrix(true.numpy(), predicted.numpy(), labels=range(4)))
    ax = matplotlib.pyplot.gcf().axes[0]
    texts = sorted(int(t.get_text()) for t in ax.texts)
    assert len(ax.texts) == 16 and texts == sorted(cm.flatten().tolist())
    assert ax.get_xlabel() == "predicted class" and ax.get_title() == "t"
    matplotlib.pyplot.close("all")


def test_show_top_anomalies_titles_label_and_score():
    images = torch.rand(5, 3, 28, 28)
    labels = torch.tensor([7, 81, 908, 12, 3])
    fig = plotting.show_top_anomalies(images, labels, [2, 0], [305.4, 12.0], "-log p(x) (nats)", "top")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["908 | 305", "007 | 12"]
    assert "top" in fig._suptitle.get_text() and "-log p(x) (nats)" in fig._suptitle.get_text()
    with pytest.raises(ValueError):
        plotting.show_top_anomalies(images, labels, [0, 1], [1.0], "s", "t")
    matplotlib.pyplot.close("all")


def test_add_title_sets_the_suptitle():
    fig = plotting.show_rows({"a": torch.rand(3, 1, 28, 28)})
    assert plotting.add_title(fig, "rows")._suptitle.get_text() == "rows"
    matplotlib.pyplot.close("all")


# --- the stored evaluations, in smoke size --------------------------------------------------------------

NOTEBOOK_EVALUATIONS = ["verification_net", "ae_mono", "ae_color", "vae_mono", "vae_color",
                        "vae_mono_missing", "vae_color_missing", "ae_mono_missing", "ae_color_missing"]


@pytest.mark.parametrize("name", NOTEBOOK_EVALUATIONS)
def test_evaluations_run_in_smoke_size_store_nothing_and_are_json(name, smoke, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a smoke run must not store an evaluation")
    monkeypatch.setattr(checkpoints, "record_evaluation", refuse)
    result = recipes.evaluate(name, device="cpu")
    json.dumps(result)
    assert result["command"] == f"python -m helpers evaluate {name}"
    if name in ("vae_mono_missing", "vae_color_missing"):
        part = result["mono" if name == "vae_mono_missing" else "stacked"]
        for score in ("elbo", "prior_mc", "importance"):
            assert len(part[score]["top_k"]) == recipes.TOP_K and 0.0 <= part[score]["roc_auc"] <= 1.0
        # the importance-sampled estimate is at least the ELBO on average (both unbiased in exp)
        assert part["importance"]["mean_log_px"] > part["elbo"]["mean_log_px"] - 1.0
        assert part["live_images"] == min(recipes.LIVE_IMAGES[1 if name == "vae_mono_missing" else 3], part["images"])
    elif name in ("ae_mono_missing", "ae_color_missing"):
        for part in (v for v in result.values() if isinstance(v, dict) and "roc_auc" in v):
            assert len(part["top_k"]) == recipes.TOP_K and 0.0 <= part["roc_auc"] <= 1.0
    else:
        summaries = [v for v in result.values() if isinstance(v, dict) and "predictability" in v]
        for s in summaries:
            # 256 generated samples, or the smoke test set for the real-image rows
            assert s["n"] in (256, SMOKE_TEST) and 0.0 <= s["predictability"] <= 1.0 and s["modes"] >= s["modes_at_tolerance"]


def test_elbo_estimators_agree_in_expectation_and_b_is_the_training_elbo():
    from helpers.models import VAE
    torch.manual_seed(0)
    model = VAE(channels=1, latent_dim=2, width=4).eval()
    x = (torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    est = metrics.elbo_estimators(model, x.expand(4000, 1, 28, 28), generator=torch.Generator().manual_seed(2))
    reference = model.elbo_terms(x.expand(4000, 1, 28, 28), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(est["closed_form_kl"], reference["elbo"], atol=1e-4)      # the same draws
    assert torch.allclose(est["reconstruction"], reference["rec"], atol=1e-4)
    a, b = est["both_terms_mc"].double(), est["closed_form_kl"].double()
    # A - B = log q - log p - KL has mean zero: the two estimators agree within Monte-Carlo error
    diff = a - b
    assert abs(diff.mean().item()) < 4 * diff.std().item() / math.sqrt(len(diff))


def test_live_sample_check_compares_fresh_samples_with_a_stored_summary():
    verifier = Verifier(BrightnessNet())

    class Bright(NoiseModel):
        def sample(self, n, generator=None):
            x = torch.full((n, 1, 28, 28), 0.5)
            x[:, 0, 0, 0] = (torch.rand(n, generator=generator) < 0.7).float()   # 70 % confident
            return x

    stored = {"tolerance": 0.8, "n": 10_000, "predictability": 0.7, "predictability_se": metrics.proportion_se(0.7, 10_000)}
    agreement, samples = metrics.live_sample_check(verifier, Bright(), 2000, stored, torch.Generator().manual_seed(0), "toy")
    assert samples.shape == (2000, 1, 28, 28) and agreement.ok and agreement.stored == 0.7
    se = math.sqrt(metrics.proportion_se(agreement.live, 2000) ** 2 + stored["predictability_se"] ** 2)
    assert agreement.se == pytest.approx(se) and abs(agreement.live - 0.7) < 0.05
    wrong = dict(stored, predictability=0.2)
    assert not metrics.live_sample_check(verifier, Bright(), 2000, wrong, torch.Generator().manual_seed(0), "toy")[0].ok


def tiny_vae():
    from helpers.models import VAE
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return VAE(channels=1, latent_dim=2, width=4).eval()


def binary_images(n, channels=1, seed=0):
    return (torch.rand(n, channels, 28, 28, generator=torch.Generator().manual_seed(seed)) > 0.8).float()


def test_log_px_estimates_prefix_and_channelwise_sum():
    model = tiny_vae()
    x = binary_images(30)
    full = metrics.log_px_estimates(model, x, prior_samples=50, importance_samples=3, seed=0, batch_size=4)
    head = metrics.log_px_estimates(model, x[:12], prior_samples=50, importance_samples=3, seed=0, batch_size=4)
    for key in ("elbo", "prior_mc", "importance"):
        assert torch.allclose(head[key], full[key][:12], atol=1e-4), key
    # importance sampling is unbiased for p(x), so on average it sits above the ELBO
    assert full["importance"].mean() > full["elbo"].mean()
    stacked = binary_images(10, channels=3, seed=1)
    summed = metrics.log_px_estimates(model, stacked, 50, 3, seed=0, channelwise=True, batch_size=6)
    per_channel = metrics.log_px_estimates(model, stacked.reshape(30, 1, 28, 28), 50, 3, seed=0, batch_size=6)
    for key in summed:
        assert torch.allclose(summed[key], per_channel[key].reshape(10, 3).sum(1), atol=1e-3), key


def test_log_px_live_checks_against_an_evaluation_record(monkeypatch):
    model = tiny_vae()
    x = binary_images(40)
    monkeypatch.setattr(recipes.autoencoders, "LIVE_IMAGES", {1: 15, 3: 15})
    monkeypatch.setattr(recipes.autoencoders, "LOG_PX_BATCH", 5)
    monkeypatch.setattr(recipes.autoencoders, "PRIOR_MC_SAMPLES", 60)
    monkeypatch.setattr(recipes.autoencoders, "IMPORTANCE_SAMPLES", 3)
    stored = recipes.autoencoders._log_px_scores(model, x, torch.arange(40) % 5 == 0)
    checks = metrics.log_px_live_checks(model, x, stored)
    assert len(checks) == 3 and all(c.ok and c.reproduced for c in checks)
    assert "reproduces the stored mean" in str(checks[0])
    stored["prior_mc"] = dict(stored["prior_mc"], live_mean_log_px=stored["prior_mc"]["live_mean_log_px"] + 1.0)
    bad = metrics.log_px_live_checks(model, x, stored)
    assert not bad[1].ok and "DOES NOT REPRODUCE" in str(bad[1])


def test_generation_summary_with_nothing_confident_has_no_kl_at_tolerance():
    s = metrics.generation_summary(classification([[3], [3]], [[0.2], [0.3]]), tolerance=0.8)
    assert s["predictability"] == 0.0 and s["coverage"] == 0.0 and s["kl_at_tolerance"] is None
    assert s["modes"] == 1 and s["kl"] == pytest.approx(math.log(10))
    json.dumps(s, allow_nan=False)


def test_plot_codes_draws_one_legend_entry_per_digit_and_refuses_bad_codes():
    import matplotlib.pyplot as plt
    from helpers import plotting
    codes, labels = torch.randn(200, 2, generator=torch.Generator().manual_seed(0)), torch.arange(200) % 10
    ax = plotting.plot_codes(codes, labels, title="t", limits=((-5, 5), (-4, 4)))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"digit {d}" for d in range(10)]
    assert ax.get_xlim() == (-5, 5) and ax.get_xlabel() == "z1"
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plotting.plot_codes(torch.zeros(5, 3), torch.zeros(5))
    plt.close("all")


def test_show_decoded_plane_puts_latent_coordinates_on_the_axes():
    import matplotlib.pyplot as plt
    from helpers import plotting
    ax = plotting.show_decoded_plane(torch.rand(9, 1, 28, 28), ((-3, 3), (-2, 2)))
    assert ax.images[0].get_extent() == [-3, 3, -2, 2] and ax.images[0].get_array().shape == (84, 84)
    with pytest.raises(ValueError, match="n \\* n"):
        plotting.show_decoded_plane(torch.rand(8, 1, 28, 28), ((-3, 3), (-2, 2)))
    plt.close("all")


def test_density_estimate_figure_draws_the_curves_it_is_given():
    import matplotlib.pyplot as plt
    grid = torch.linspace(-3, 3, 61)
    f0 = torch.exp(-0.5 * grid ** 2) / math.sqrt(2 * math.pi)
    d = torch.sigmoid(grid)
    fig = plotting.density_estimate_figure(grid, d, 2 * f0, f0 * d / (1 - d), f0, "test law", sample_range=(-2.0, 2.0))
    left, right = fig.axes
    assert np.allclose(left.lines[0].get_ydata(), d.numpy())                       # D(x) first
    assert np.allclose(right.lines[1].get_ydata(), (f0 * d / (1 - d)).numpy())     # the estimate
    assert right.get_yscale() == "log" and "test law" in left.get_title()
    assert len(right.get_legend().get_texts()) == 4                                 # with the shaded sample range
    plt.close(fig)
