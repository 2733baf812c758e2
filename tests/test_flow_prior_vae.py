"""Notebook 08's flow-prior VAE: the recipe differs from vae_mono by its prior alone, and the
prior-comparison evaluation (likelihoods, stackedMNIST balance, paired differences) in smoke size."""
import json

import pytest
import torch

from helpers import checkpoints, recipes, settings
from helpers.models import VAE
from helpers.priors import RealNVP, StandardNormal


def test_two_vaes_that_differ_by_their_prior_start_from_the_same_encoder_and_decoder():
    with settings.forked_rng(0):
        gaussian = VAE(channels=1, latent_dim=4, width=4)
    with settings.forked_rng(0):
        flow = VAE(channels=1, latent_dim=4, width=4, **recipes.FLOW_PRIOR)
    assert isinstance(gaussian.prior, StandardNormal) and isinstance(flow.prior, RealNVP)
    assert len(flow.prior.layers) >= 3                                  # the issue asks for >= 3 couplings
    for part in ("encoder", "decoder"):
        a, b = getattr(gaussian, part).state_dict(), getattr(flow, part).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_flow_recipe_is_vae_mono_with_a_realnvp_prior(verifier_only, smoke):
    flow = recipes.RECIPES["vae_mono_flow"](torch.device("cpu"), None)
    plain = recipes.RECIPES["vae_mono"](torch.device("cpu"), None)
    assert flow.data_mode == plain.data_mode == "MONO_BINARY_COMPLETE"
    want = {**plain.model.config, "prior": "realnvp", "prior_kwargs": recipes.FLOW_PRIOR["prior_kwargs"]}
    assert flow.model.config == want
    assert set(flow.metrics) == set(plain.metrics) and "test_elbo" in flow.metrics
    assert flow.history["epochs"][0].keys() == plain.history["epochs"][0].keys()
    assert flow.model.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, 1, 28, 28)


def tiny_vae(prior: bool) -> VAE:
    with settings.forked_rng(0):
        model = VAE(channels=1, latent_dim=4, width=4, **(recipes.FLOW_PRIOR if prior else {}))
        if prior:                                            # away from the identity initialisation
            for p in model.prior.parameters():
                p.data.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_the_prior_comparison_is_reproducible_on_a_subset_and_pairs_the_two_priors(verifier_only, smoke):
    checkpoints.save("vae_mono", tiny_vae(prior=False))
    checkpoints.save("vae_mono_flow", tiny_vae(prior=True))
    out = recipes.evaluate("vae_mono_flow:prior_comparison")
    json.dumps(out)
    assert "evaluations" not in checkpoints.entry("vae_mono_flow")            # smoke mode stores nothing
    n = out["images"]["test_log_px"]
    assert out["k"] == recipes.COMPARISON_K and (n, out["live_images"]) == (256, 200)   # smoke sizes
    for key in ("val_elbo", "test_elbo", "test_log_px"):
        assert {"mean", "se", "sd", "live_mean"} <= set(out[key]) and {"mean", "se"} <= set(out["paired"][key])
    assert out["test_log_px"]["mean"] >= out["test_elbo"]["mean"] - 5       # log p(x) is not below the ELBO
    assert [r["seed"] for r in out["balance"]["by_seed"]] == list(recipes.BALANCE_SEEDS)
    assert out["balance"]["by_seed"][0]["n"] == 256 and {"mean", "sd"} == set(out["balance"]["kl"])
    # the paired differences are the two models' own figures subtracted (same images, same draws)
    plain = recipes.evaluate("vae_mono:prior_comparison")
    assert "paired" not in plain
    for key in ("val_elbo", "test_elbo", "test_log_px"):
        assert out["paired"][key]["mean"] == pytest.approx(out[key]["mean"] - plain[key]["mean"], abs=2e-3)
    # a notebook's recomputation of the first live images gives the stored live mean exactly
    data = recipes.mono_binary_splits()
    live = recipes.prior_comparison_values(checkpoints.load("vae_mono_flow"), data, out["live_images"] // 2)
    full = recipes.prior_comparison_values(checkpoints.load("vae_mono_flow"), data, out["live_images"])
    assert torch.equal(live["test_log_px"], full["test_log_px"][:len(live["test_log_px"])])
    assert full["test_log_px"].double().mean().item() == pytest.approx(out["test_log_px"]["live_mean"], abs=1e-3)


# --- notebook 08's figure helpers --------------------------------------------------------------------

def test_posterior_means_and_prior_share_one_projection():
    from helpers import latent
    model = tiny_vae(prior=True)
    x = (torch.rand(50, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    view = latent.posterior_means_and_prior(model, x, 40, generator=torch.Generator().manual_seed(1))
    assert view["means"].shape == (50, 2) and view["prior"].shape == (40, 2) and view["explained"].shape == (2,)
    projected, _, fitted = latent.pca(latent.encode(model, x), 2)
    assert torch.allclose(view["means"], projected, atol=1e-5)
    codes = model.prior.sample(40, torch.Generator().manual_seed(1))                  # the same draws
    want = (codes.double() - torch.from_numpy(fitted.mean_)) @ torch.from_numpy(fitted.components_).T
    assert torch.allclose(view["prior"], want.float(), atol=1e-4)


def test_image_grids_and_the_prior_posterior_view_draw_what_they_say():
    import matplotlib.pyplot as plt
    from helpers import plotting
    g = torch.Generator().manual_seed(0)
    fig = plotting.image_grids({"a": torch.rand(10, 1, 28, 28, generator=g), "b": torch.rand(10, 1, 28, 28, generator=g)},
                               ncols=4, title="two panels")
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"] and fig.axes[0].images[0].get_array().shape == (84, 112)
    with pytest.raises(ValueError, match="same number"):
        plotting.image_grids({"a": torch.rand(2, 1, 28, 28), "b": torch.rand(3, 1, 28, 28)})
    means, prior = torch.randn(300, 2, generator=g), torch.randn(2000, 2, generator=g)
    ax = plotting.plot_prior_and_posterior(means, prior, torch.arange(300) % 10, title="view", legend="inside")
    assert len(ax.collections) >= 10 + 1                     # ten digit scatters and the contour lines
    names = ax.get_legend_handles_labels()[1]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(legend) == 11 and legend[-1].startswith("p(z) samples") and ax.get_xlabel() == "PC 1"
    assert ax.get_title() == "view" and names[:10] == [f"digit {d}" for d in range(10)]
    assert plotting.plot_prior_and_posterior(means, prior, torch.arange(300) % 10, legend=None).get_legend() is None
    with pytest.raises(ValueError, match=r"\(M, 2\)"):
        plotting.plot_prior_and_posterior(means, torch.randn(5, 3), torch.zeros(300))
    plt.close("all")
