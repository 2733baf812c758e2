"""Encoder-free inference and image completion (2AMU20 Task 4) on a tiny VAE."""
import pytest
import torch

from helpers import inference
from helpers.models import VAE


def tiny_vae():
    """An untrained VAE whose decoder depends strongly on z (so there is something to infer)."""
    torch.manual_seed(0)
    vae = VAE(channels=1, latent_dim=3, width=4).eval()
    with torch.no_grad():
        vae.decoder.fc[0].weight.mul_(30)
    return vae


def images(n, seed=0):
    return (torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def test_fitting_raises_the_elbo_and_leaves_the_decoder_untouched():
    vae = tiny_vae().train()                           # even a model left in training mode
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    x = images(6)
    start = inference.PerImagePosterior(vae, x)
    with inference.frozen(vae):
        elbo0 = torch.stack([start.elbo(torch.arange(6), torch.Generator().manual_seed(s)) for s in range(50)]).mean(0)
    posterior, history = inference.fit_posteriors(vae, x, max_steps=300, lr=0.05, progress=False)
    elbo1 = torch.stack([inference.encoder_free_elbo(posterior, torch.Generator().manual_seed(s)) for s in range(50)]).mean(0)
    assert (elbo1 > elbo0.detach() + 1.0).all()
    for k, v in vae.state_dict().items():
        assert torch.equal(v, before[k]), k                         # batch-norm statistics did not move
    assert vae.training and all(p.requires_grad for p in vae.parameters())   # its state is given back
    assert posterior.mean.shape == (6, 3) and len(history.epochs) <= 300


def test_masks_cover_exactly_what_they_claim():
    left = inference.make_mask("left", n=2)
    assert left.shape == (2, 1, 28, 28) and left[:, :, :, :14].eq(1).all() and left[:, :, :, 14:].eq(0).all()
    top = inference.make_mask("top")
    assert top[0, 0, :14].eq(1).all() and top[0, 0, 14:].eq(0).all()
    for a, b in (("left", "right"), ("top", "bottom")):
        assert torch.equal(inference.make_mask(a) + inference.make_mask(b), torch.ones(1, 1, 28, 28))
    rnd = inference.make_mask("random", n=200, fraction=0.3, generator=torch.Generator().manual_seed(0))
    assert abs(rnd.mean().item() - 0.3) < 0.01
    with pytest.raises(ValueError, match="mask kind"):
        inference.make_mask("diagonal")


def test_a_mask_of_the_wrong_shape_or_values_is_a_clear_error():
    x = images(3)
    with pytest.raises(ValueError, match=r"mask must have shape \(N or 1, 1 or C, H, W\)"):
        inference.fit_posteriors(tiny_vae(), x, torch.ones(3, 1, 14, 28), max_steps=2, progress=False)
    with pytest.raises(ValueError, match="0 \\(missing\\) or 1"):
        inference.check_mask(torch.full((3, 1, 28, 28), 0.5), x)


def test_completion_keeps_the_observed_pixels_and_fills_the_rest():
    vae, x = tiny_vae(), images(4)
    mask = inference.make_mask("left", n=4)
    posterior, _ = inference.fit_posteriors(vae, x, mask, max_steps=20, progress=False)
    filled = inference.complete(posterior, n_samples=3, generator=torch.Generator().manual_seed(0))
    assert filled.shape == (3, 4, 1, 28, 28)
    assert torch.equal(filled[:, :, :, :, :14], x[:, :, :, :14].expand(3, 4, 1, 28, 14))
    assert not torch.equal(filled[0, :, :, :, 14:], filled[1, :, :, :, 14:])     # different z, different fill


def test_the_masked_elbo_ignores_the_missing_pixels():
    vae, x = tiny_vae(), images(2)
    changed = x.clone()
    changed[:, :, :, 14:] = 1 - changed[:, :, :, 14:]               # change only the right half
    mask = inference.make_mask("left", n=2)
    a = inference.PerImagePosterior(vae, x, mask).elbo(torch.arange(2), torch.Generator().manual_seed(0))
    b = inference.PerImagePosterior(vae, changed, mask).elbo(torch.arange(2), torch.Generator().manual_seed(0))
    assert torch.allclose(a, b)


# --- the stopping criterion ---------------------------------------------------------------------------

def criterion_on(values, **kwargs):
    """Feed a sequence of per-step losses to a ConvergenceCriterion; returns it and the stop step."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    crit = inference.ConvergenceCriterion(opt, **kwargs)
    for step, v in enumerate(values, 1):
        if crit.step(v):
            return crit, opt, step
    return crit, opt, None


def test_the_criterion_lowers_the_rate_when_progress_stalls_and_then_stops():
    improving = [100.0 * 0.99 ** t for t in range(300)]               # 1 % better every step: never stalls
    crit, opt, stop = criterion_on(improving, window=10, rel_tol=1e-3, drop=0.5, drops=2)
    assert stop is None and crit.drop_steps == [] and opt.param_groups[0]["lr"] == 0.1
    flat = [90.0] * 200
    crit, opt, stop = criterion_on(flat, window=10, rel_tol=1e-3, drop=0.5, drops=2)
    # two fresh windows at each rate: the first firing after 20 steps, then 20 more per drop
    assert crit.drop_steps == [20, 40] and stop == 60 and crit.stopped_at == 60
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 2)
    # relative: the same shape at another scale stops at the same steps
    crit2, _, stop2 = criterion_on([9000.0] * 200, window=10, rel_tol=1e-3, drop=0.5, drops=2)
    assert stop2 == stop and crit2.drop_steps == crit.drop_steps
    with pytest.raises(ValueError, match="need window >= 1"):
        criterion_on([1.0], window=0)


def test_fitting_stops_by_the_criterion_and_reports_it():
    vae, x = tiny_vae(), images(40)
    posterior, history = inference.fit_posteriors(vae, x, max_steps=1000, window=10, rel_tol=1e-3, progress=False)
    info = posterior.fit_info
    assert info["stopped_at"] == info["steps"] == len(history.epochs) < 1000
    assert len(info["drop_steps"]) == inference.DROPS
    assert history.best_epoch is None           # the last step's parameters are kept, not a noisy "best"


def test_the_fitted_elbo_is_the_frozen_decoders_elbo():
    """The posterior decodes with a frozen (eval-mode, channels-last) copy of the decoder: the same
    function as the VAE's own decoder in eval mode, batch-norm running statistics included."""
    vae = tiny_vae()
    with torch.no_grad():
        for m in vae.decoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
    vae.train()
    x = images(5)
    posterior = inference.PerImagePosterior(vae, x)
    with torch.no_grad():
        posterior.mean.normal_(generator=torch.Generator().manual_seed(1))
        got = posterior.elbo(torch.arange(5), torch.Generator().manual_seed(2))
        vae.eval()
        z = inference.reparameterize(posterior.mean, posterior.logvar, torch.Generator().manual_seed(2))
        want = vae.likelihood.log_prob(vae.decoder(z), x) - vae.prior.kl(posterior.mean, posterior.logvar, z)
    assert torch.allclose(got, want, atol=1e-3)


# --- masks, fills and baselines -------------------------------------------------------------------------

def test_every_mask_observes_half_of_the_image():
    for kind in ("left", "right", "top", "bottom"):
        assert inference.make_mask(kind).sum().item() == 28 * 14, kind
    right, bottom = inference.make_mask("right")[0, 0], inference.make_mask("bottom")[0, 0]
    assert right[:, 14:].eq(1).all() and right[:, :14].eq(0).all()
    assert bottom[14:].eq(1).all() and bottom[:14].eq(0).all()
    a = inference.make_mask("random", n=3, generator=torch.Generator().manual_seed(4))
    b = inference.make_mask("random", n=3, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])          # reproducible, its own pixels per image
    assert set(a.unique().tolist()) == {0.0, 1.0}


def test_masks_of_the_wrong_count_or_kind_are_clear_errors():
    x = images(3)
    with pytest.raises(ValueError, match=r"mask must have shape .* got \(2, 1, 28, 28\)"):
        inference.check_mask(torch.ones(2, 1, 28, 28), x)
    with pytest.raises(ValueError, match="got ndarray"):
        inference.check_mask(torch.ones(3, 1, 28, 28).numpy(), x)
    with pytest.raises(ValueError, match=r"got \(3, 28, 28\)"):
        inference.fill_missing(x, torch.ones(3, 28, 28), 0.0)
    assert inference.check_mask(torch.ones(1, 1, 28, 28), x).shape == (3, 1, 28, 28)   # one mask for all


def test_fills_and_the_encoder_baseline_keep_the_observed_pixels():
    vae, x = tiny_vae(), images(4)
    mask = inference.make_mask("top", n=4)
    mean_image = torch.full((1, 1, 28, 28), 0.25)
    for fill, expected in ((0.0, 0.0), (mean_image, 0.25)):
        out = inference.fill_missing(x, mask, fill)
        assert torch.equal(out[:, :, :14], x[:, :, :14]) and out[:, :, 14:].eq(expected).all()
    g = torch.Generator().manual_seed(0)
    out = inference.encoder_completion(vae, x, mask, g)
    assert torch.equal(out[:, :, :14], x[:, :, :14]) and set(out[:, :, 14:].unique().tolist()) <= {0.0, 1.0}
    # the encoder sees only the observed pixels: changing the missing ones changes nothing
    changed = x.clone()
    changed[:, :, 14:] = 1 - changed[:, :, 14:]
    again = inference.encoder_completion(vae, changed, mask, torch.Generator().manual_seed(0))
    assert torch.equal(again[:, :, 14:], out[:, :, 14:])


def test_importance_sampling_takes_another_proposal():
    from helpers import metrics
    vae, x = tiny_vae(), images(3)
    with torch.no_grad():
        mu, logvar = vae.posterior(x)
    z = inference.reparameterize(mu, logvar, torch.Generator().manual_seed(0), 7)
    default = metrics.importance_log_likelihood(vae, x.flatten(1), z)
    assert torch.allclose(metrics.importance_log_likelihood(vae, x.flatten(1), z, proposal=(mu, logvar)), default)
    with pytest.raises(ValueError, match="proposal's mean and log-variance must be"):
        metrics.importance_log_likelihood(vae, x.flatten(1), z, proposal=(mu[:2], logvar[:2]))


# --- a checkpoint's second, named evaluation -------------------------------------------------------------

def test_a_named_evaluation_is_stored_beside_the_main_one(ckpt_dir, monkeypatch, capsys):
    from helpers import checkpoints, recipes
    from helpers.__main__ import main
    checkpoints.save("tiny", tiny_vae(), metrics={"m": 1.0})
    for key in ("tiny", "tiny:extra"):          # registered below; removed again after the test
        monkeypatch.setitem(recipes.EVALUATIONS, key, None)
    recipes.evaluation("tiny")(lambda model: {"main": 1})
    recipes.evaluation("tiny", part="extra")(lambda model: {"extra": 2, "latent": model.latent_dim})
    assert main(["evaluate", "tiny"]) == 0
    main_before = checkpoints.stored_evaluation("tiny")
    assert main(["evaluate", "tiny:extra"]) == 0
    assert "tiny:extra" in capsys.readouterr().out
    meta = checkpoints.entry("tiny")
    assert meta["evaluation"] == main_before and main_before["main"] == 1        # untouched
    extra = checkpoints.stored_evaluation("tiny", part="extra")
    assert extra["extra"] == 2 and extra["latent"] == 3
    assert extra["command"] == "python -m helpers evaluate tiny:extra" and extra["sha256"] == meta["sha256"]
    assert main(["evaluate", "tiny"]) == 0                                       # and the other way round
    assert checkpoints.stored_evaluation("tiny", part="extra") == extra
    with pytest.raises(checkpoints.CheckpointError, match="python -m helpers evaluate tiny:other"):
        checkpoints.stored_evaluation("tiny", part="other")
    with pytest.raises(ValueError, match="non-empty name without ':'"):
        recipes.evaluation("tiny", part="a:b")
    with pytest.raises(SystemExit):
        main(["evaluate", "tiny:nothing"])
    assert "no evaluation for" in capsys.readouterr().err


def test_the_encoder_free_evaluation_in_smoke_size_stores_nothing(smoke, monkeypatch):
    import json

    from helpers import checkpoints, recipes
    def refuse(*args, **kwargs):
        raise AssertionError("a smoke run must not store an evaluation")
    monkeypatch.setattr(checkpoints, "record_evaluation", refuse)
    monkeypatch.setattr(recipes.latent_models, "smoke_count", lambda n: 24)
    monkeypatch.setattr(recipes.latent_models, "EF_CHUNK", 12)
    monkeypatch.setattr(recipes.latent_models, "EF_LIVE", 12)
    monkeypatch.setattr(recipes.latent_models, "EF_K", 3)
    monkeypatch.setattr(recipes.latent_models, "EF_DRAWS", 2)
    result = recipes.evaluate("vae_z100:encoder_free", device="cpu")
    json.dumps(result)
    assert result["command"] == "python -m helpers evaluate vae_z100:encoder_free" and result["images"] == 24
    assert {"amortisation", "approximation", "encoder_free_elbo", "encoder_elbo", "log_px"} <= set(result["gap"])
    for kind in inference.MASKS:
        for method in recipes.COMPLETION_METHODS:
            assert 0.0 <= result["completion"][kind][method]["mean"] <= 1.0


def test_a_schedule_replays_a_fit_exactly():
    """schedule= runs the same optimisation without the criterion: the same number of steps and the
    same learning-rate drops give the same parameters (the one-by-one baseline of the benchmark)."""
    vae, x = tiny_vae(), images(8)
    first, _ = inference.fit_posteriors(vae, x, window=10, rel_tol=1e-3, seed=3, progress=False)
    info = first.fit_info
    again, history = inference.fit_posteriors(vae, x, max_steps=info["steps"], schedule=info["drop_steps"], seed=3,
                                              progress=False)
    assert len(history.epochs) == info["steps"] and again.fit_info["drop_steps"] == info["drop_steps"]
    assert torch.allclose(again.mean, first.mean, atol=1e-5) and torch.allclose(again.logvar, first.logvar, atol=1e-5)


def test_the_column_grid_of_task_4():
    import matplotlib
    matplotlib.use("Agg")
    from helpers import plotting
    cols = {"x": images(5), "x'": images(5, seed=1), "x''": images(5, seed=2)}
    fig = plotting.columns_grid(cols, blocks=2, title="t", divide=["x'"])
    assert len(fig.axes) == 15 and fig.axes[0].get_title() == "x" and fig.axes[1].get_lines()   # the divider
    with pytest.raises(ValueError, match="same number of images"):
        plotting.columns_grid({"x": images(5), "y": images(4)})
    with pytest.raises(ValueError, match="blocks must be in 1..5"):
        plotting.columns_grid(cols, blocks=6)
    matplotlib.pyplot.close("all")
