"""GANs: the DCGAN and WGAN-GP steps of `divergences`, PacGAN packing, the fixed-noise snapshots,
the stackedMNIST mode count on constructed classes, and the four GAN recipes in smoke size.

Already covered elsewhere: the gradient penalty against a hand computation on linear critics
(tests/test_divergences.py), GAN sample/judge shapes (tests/test_models.py), and `fit`'s exact
multi-optimiser resume on a toy GAN (tests/test_adversarial_fit.py); the resume test here runs
the real GAN steps and snapshots through `fit_gan`, the path the recipes take.
"""
import copy
import functools
import math

import pytest
import torch

from helpers import checkpoints, recipes, settings
from helpers.divergences import dcgan_step, fit_gan, gan_optimizers, wgan_gp_step
from helpers.models import GAN
from helpers.nets import DCGANDiscriminator, DCGANGenerator
from helpers.verification import Classification

GAN_RECIPES = ["dcgan_mnist", "dcgan_stacked", "pacgan_stacked", "wgan_gp_mnist"]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def tiny_gan(channels=1, pack=1, d_norm="batch", snapshots=0, ema=0.0):
    with settings.forked_rng(0):
        return GAN(channels=channels, latent_dim=8, width=4, pack=pack, d_norm=d_norm, snapshots=snapshots, ema=ema)


def images(n, channels=1, seed=1):
    return torch.rand(n, channels, 28, 28, generator=gen(seed))


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def all_changed(before, module):
    return all(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def unchanged(before, module):
    return all(torch.equal(a, b) for a, b in zip(before, module.parameters()))


# ------------------------------------------------------------------------------------ networks

@pytest.mark.parametrize("channels,pack", [(1, 1), (3, 1), (3, 2), (1, 2)])
def test_generator_and_discriminator_output_shapes(channels, pack):
    g = DCGANGenerator(latent_dim=8, width=4, channels=channels)
    x = g(torch.randn(6, 8, generator=gen()))
    assert x.shape == (6, channels, 28, 28) and x.min() >= 0 and x.max() <= 1
    d = DCGANDiscriminator(channels, width=4, pack=pack)
    assert d(torch.rand(6 // pack, pack * channels, 28, 28, generator=gen())).shape == (6 // pack,)
    gan = tiny_gan(channels, pack)
    assert gan.judge(images(6, channels)).shape == (6 // pack,)
    with pytest.raises(RuntimeError):            # a discriminator built for pack * C channels only
        d(torch.rand(2, pack * channels + 1, 28, 28))


def test_a_deeper_generator_adds_its_blocks_and_keeps_the_shallow_state_dict_keys(tmp_path):
    shallow, deep = DCGANGenerator(8, width=4), DCGANGenerator(8, width=4, blocks=2)
    assert not any(k.startswith("body.") for k in shallow.state_dict())       # old checkpoints still load
    assert set(shallow.state_dict()) < set(deep.state_dict())
    assert sum(k.startswith("body.") and k.endswith("weight") for k in deep.state_dict()) == 4  # 2 convs, 2 norms
    assert deep(torch.randn(3, 8, generator=gen())).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match="blocks"):
        DCGANGenerator(8, width=4, blocks=-1)
    with settings.forked_rng(0):
        gan = GAN(latent_dim=8, width=4, blocks=1, ema=0.9)
    assert gan.config["blocks"] == 1 and "blocks" not in tiny_gan().config
    checkpoints.save("deep_gan", gan, directory=tmp_path)
    loaded = checkpoints.load("deep_gan", "cpu", directory=tmp_path)
    z = torch.randn(4, 8, generator=gen())
    assert torch.equal(loaded.eval().decode(z), gan.eval().decode(z))


def test_a_fit_gan_monitor_adds_its_values_to_every_epoch_record():
    calls = []

    def monitor(model):
        calls.append(model.training)
        return {"score": float(len(calls))}
    gan = tiny_gan(snapshots=2)
    history = fit_gan(gan, images(16), dcgan_step, lr=1e-3, betas=(0.5, 0.9), epochs=2, batch_size=8,
                      progress=False, monitor=monitor)
    assert [e["score"] for e in history.epochs] == [1.0, 2.0] and calls == [False, False]   # eval mode
    assert int(gan.snapshot_count) == 2


# --------------------------------------------------------------------------------- DCGAN step

@pytest.mark.parametrize("pack", [1, 2])
def test_dcgan_step_moves_both_networks_and_logs_its_scalars(pack):
    gan = tiny_gan(pack=pack)
    opts = gan_optimizers(gan, 1e-3, (0.5, 0.999))
    g_before, d_before = params(gan.generator), params(gan.discriminator)
    logged = dcgan_step(gan, (images(8),), opts, 0, generator=gen(2))
    assert set(logged) == {"loss_d", "loss_g", "d_x", "d_g_z"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in logged.values())
    assert 0 < logged["d_x"] < 1 and 0 < logged["d_g_z"] < 1 and logged["loss_d"] > 0 and logged["loss_g"] > 0
    assert all_changed(g_before, gan.generator) and all_changed(d_before, gan.discriminator)


def test_dcgan_losses_are_the_hand_written_bce_and_the_generator_step_leaves_the_discriminator_alone():
    """loss_d = -log D(x) - log(1 - D(G(z))) and loss_g = -log D(G(z')) recomputed by hand; after the
    step the discriminator holds exactly the gradient of loss_d (the generator's backward pass
    adds nothing to it)."""
    gan, real = tiny_gan(pack=2), images(8)
    reference = copy.deepcopy(gan)
    g = gen(5)
    logged = dcgan_step(gan, (real,), gan_optimizers(gan, 1e-3, (0.5, 0.999)), 0, generator=g)

    g_ref = gen(5)
    z = reference.latent(8, g_ref)
    fake = reference.generator(z)
    d_real, d_fake = reference.judge(real), reference.judge(fake.detach())     # 4 packed pairs each
    loss_d = -(torch.log(torch.sigmoid(d_real)).mean() + torch.log(1 - torch.sigmoid(d_fake)).mean())
    assert logged["loss_d"].item() == pytest.approx(loss_d.item(), rel=1e-5)
    assert logged["d_x"].item() == pytest.approx(torch.sigmoid(d_real).mean().item(), rel=1e-6)
    opt_d = gan_optimizers(reference, 1e-3, (0.5, 0.999))["discriminator"]
    loss_d.backward()
    for a, b in zip(gan.discriminator.parameters(), reference.discriminator.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6)   # a bias before batch norm: ~0
    opt_d.step()
    with torch.no_grad():                                      # the generator's fresh codes, judged by the new D
        loss_g = -torch.log(torch.sigmoid(reference.judge(reference.generator(reference.latent(8, g_ref))))).mean()
    assert logged["loss_g"].item() == pytest.approx(loss_g.item(), rel=1e-4)


def test_steps_draw_from_their_generator_and_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    runs = []
    for _ in range(2):
        gan = tiny_gan(d_norm=None)
        opts = gan_optimizers(gan, 1e-3, (0.5, 0.9))
        g = gen(7)
        dcgan_step(gan, (images(6),), opts, 0, generator=g)
        wgan_gp_step(gan, (images(6),), opts, 0, n_critic=1, generator=g)
        runs.append(gan.state_dict())
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(runs[0].values(), runs[1].values()))


def test_packed_steps_cut_an_odd_batch_and_refuse_one_smaller_than_pack():
    gan = tiny_gan(pack=2)
    opts = gan_optimizers(gan, 1e-3, (0.5, 0.999))
    assert torch.isfinite(dcgan_step(gan, (images(7),), opts, 0, generator=gen())["loss_d"])
    with pytest.raises(ValueError, match="smaller than pack = 4"):
        dcgan_step(tiny_gan(pack=4), (images(3),), opts, 0)


def test_training_data_of_the_wrong_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"must have shape \(N, 1, 28, 28\), got \(8, 3, 28, 28\)"):
        fit_gan(tiny_gan(), images(8, channels=3), dcgan_step, lr=1e-3, betas=(0.5, 0.9), epochs=1, batch_size=4,
                progress=False)


# ------------------------------------------------------------------------------- WGAN-GP step

def test_wgan_gp_step_moves_the_generator_only_every_n_critic_iterations():
    gan = tiny_gan(d_norm=None)
    opts = gan_optimizers(gan, 1e-3, (0.5, 0.9))
    g = gen(3)
    moved = []
    for iteration in range(7):
        g_before, c_before = params(gan.generator), params(gan.discriminator)
        logged = wgan_gp_step(gan, (images(8, seed=iteration),), opts, iteration, n_critic=3, generator=g)
        assert not unchanged(c_before, gan.discriminator)               # the critic moves every time
        # ... except T's constant offset: E T(x) - E T(G(z)) and the penalty do not depend on it
        assert torch.equal(c_before[-1], gan.discriminator.net[-1].bias)
        moved.append(not unchanged(g_before, gan.generator))
        assert logged["g_step"].item() == float(moved[-1])
        assert set(logged) == {"loss_critic", "wasserstein", "penalty", "loss_g", "g_step"}
        # the logged terms make up the critic's loss with lambda = 10
        assert logged["loss_critic"].item() == pytest.approx(
            (-logged["wasserstein"] + 10 * logged["penalty"]).item(), rel=1e-5, abs=1e-6)
        assert logged["penalty"] >= 0
    assert moved == [False, False, True, False, False, True, False]


def test_wgan_gp_step_refuses_a_packed_critic_and_bad_settings():
    opts = gan_optimizers(tiny_gan(pack=2, d_norm=None), 1e-3, (0.5, 0.9))
    with pytest.raises(ValueError, match="unpacked critic"):
        wgan_gp_step(tiny_gan(pack=2, d_norm=None), (images(4),), opts, 0)
    gan = tiny_gan(d_norm=None)
    with pytest.raises(ValueError, match="n_critic >= 1"):
        wgan_gp_step(gan, (images(4),), gan_optimizers(gan, 1e-3, (0.5, 0.9)), 0, n_critic=0)


# -------------------------------------------------------------------------- snapshots, resume

def test_snapshots_record_the_fixed_codes_and_load_back_from_a_checkpoint(tmp_path):
    gan = tiny_gan(snapshots=2)
    assert gan.fixed_noise_snapshots().shape == (0, 16, 1, 28, 28)
    gan.take_snapshot()
    assert gan.training                                             # the mode is given back
    expected = gan.eval().decode(gan.fixed_noise)
    taken = gan.fixed_noise_snapshots()
    assert taken.shape == (1, 16, 1, 28, 28)
    assert torch.allclose(taken[0], expected, atol=0.5 / 255 + 1e-6)      # 256 grey levels
    gan.take_snapshot()
    with pytest.raises(ValueError, match="all 2 snapshot slots"):
        gan.take_snapshot()
    checkpoints.save("tiny_gan", gan, directory=tmp_path)
    loaded = checkpoints.load("tiny_gan", "cpu", directory=tmp_path)
    assert torch.equal(loaded.fixed_noise_snapshots(), gan.fixed_noise_snapshots())
    assert "snapshots" not in tiny_gan().config                       # GANs without them are as before
    with pytest.raises(ValueError, match="keeps no snapshots"):
        tiny_gan().take_snapshot()


@pytest.mark.parametrize("kind", ["dcgan", "dcgan_ema", "wgan_gp"])
def test_an_interrupted_gan_training_resumes_to_the_same_weights_and_snapshots(tmp_path, kind):
    """4 batches an epoch, 3 epochs; WGAN-GP with n_critic = 3, so its generator steps straddle the
    epochs. A crash in epoch 2 resumes from the end of epoch 1 (with its weight average, if any)."""
    step = functools.partial(wgan_gp_step, n_critic=3) if kind == "wgan_gp" else dcgan_step
    d_norm = None if kind == "wgan_gp" else "batch"
    ema = 0.9 if kind == "dcgan_ema" else 0.0
    data = images(32)

    def train(gan, step, resume=None):
        return fit_gan(gan, data, step, lr=1e-3, betas=(0.5, 0.9), epochs=3, batch_size=8, seed=4,
                       resume_path=resume, progress=False, log_every=2)

    reference = tiny_gan(d_norm=d_norm, snapshots=3, ema=ema)
    h_ref = train(reference, step)

    def crash_in_epoch_2(model, batch, optimizers, iteration):
        if iteration == 5:
            raise KeyboardInterrupt
        return step(model, batch, optimizers, iteration)
    resume = tmp_path / "gan.pt"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_gan(d_norm=d_norm, snapshots=3, ema=ema), crash_in_epoch_2, resume)
    assert resume.exists()
    resumed = tiny_gan(d_norm=d_norm, snapshots=3, ema=ema)
    h = train(resumed, step, resume)
    assert not resume.exists()
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3] and h.steps == h_ref.steps
    for (key, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key
    assert int(resumed.snapshot_count) == 3
    if kind == "wgan_gp":
        assert sum(e["train_g_step"] for e in h.epochs) == pytest.approx(4 / 4)   # iterations 2, 5, 8, 11


# ------------------------------------------------------------------ generator weight averaging

def test_the_weight_average_follows_its_closed_form_and_samples_in_place_of_the_generator():
    gan = tiny_gan(ema=0.9)
    plain = tiny_gan()
    assert gan.sampler is gan.generator_ema and plain.sampler is plain.generator
    start = params(gan.generator_ema)
    assert all(torch.equal(a, b) for a, b in zip(start, gan.generator.parameters()))    # starts as a copy
    with torch.no_grad():
        for p in gan.generator.parameters():
            p.add_(1.0)
    gan.update_ema()
    for a, p, avg in zip(start, gan.generator.parameters(), gan.generator_ema.parameters()):
        assert torch.allclose(avg, 0.9 * a + 0.1 * p)
    gan.eval()
    z = torch.randn(5, 8, generator=gen())
    assert torch.equal(gan.decode(z), gan.generator_ema(z))
    assert not torch.equal(gan.decode(z), gan.generator(z))
    assert not any(p.requires_grad for p in gan.generator_ema.parameters())
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="ema must be in"):
            tiny_gan(ema=bad)
    with pytest.raises(ValueError, match="no weight average"):
        tiny_gan().update_ema()


def test_the_averaged_generators_batch_norm_statistics_are_measured_on_its_own_outputs():
    gan = tiny_gan(ema=0.9)
    n = GAN.EMA_STATISTICS_CODES
    gan.refresh_ema_statistics(batch_size=n)                     # one batch: exact mean, unbiased variance
    codes = torch.randn(n, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = gan.generator_ema.fc[0](codes)                # the input of the first batch norm
    norm = gan.generator_ema.fc[1]
    assert torch.allclose(norm.running_mean, features.mean(0), atol=1e-5)
    assert torch.allclose(norm.running_var, features.var(0), rtol=1e-4, atol=1e-6)
    assert norm.momentum == 0.1 and gan.generator_ema.training    # settings and mode given back


def test_averaging_leaves_the_training_itself_unchanged():
    """Same seed with and without ema: the trained networks end identical, only the sampler differs."""
    data = images(32)

    def train(gan):
        fit_gan(gan, data, dcgan_step, lr=1e-3, betas=(0.5, 0.9), epochs=2, batch_size=8, seed=4, progress=False)
        return gan
    plain, averaged = train(tiny_gan()), train(tiny_gan(ema=0.9))
    for a, b in zip(plain.generator.parameters(), averaged.generator.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(plain.discriminator.parameters(), averaged.discriminator.parameters()):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(averaged.generator.parameters(),
                                                      averaged.generator_ema.parameters()))


def test_a_gan_with_a_weight_average_loads_back_from_a_checkpoint(tmp_path):
    gan = tiny_gan(ema=0.99, snapshots=2)
    gan.take_snapshot()
    with torch.no_grad():
        for p in gan.generator.parameters():
            p.mul_(0.5)
    gan.update_ema()
    gan.refresh_ema_statistics()
    checkpoints.save("tiny_gan_ema", gan, directory=tmp_path)
    loaded = checkpoints.load("tiny_gan_ema", "cpu", directory=tmp_path)
    assert loaded.ema == 0.99
    for (key, a), b in zip(gan.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), key
    z = torch.randn(4, 8, generator=gen())
    assert torch.equal(loaded.eval().decode(z), gan.eval().decode(z))
    state = torch.random.get_rng_state()
    last = loaded.without_average()
    assert torch.equal(torch.random.get_rng_state(), state)                   # the global RNG is left alone
    assert last.ema == 0.0 and "ema" not in last.config and not hasattr(last, "generator_ema")
    assert torch.equal(last.eval().decode(z), gan.generator(z))               # the trained generator samples
    assert last.snapshots == 0 and loaded.fixed_noise_snapshots().shape[0] == 1  # the average's record stays
    assert loaded.ema == 0.99 and torch.equal(loaded.decode(z), gan.decode(z))  # the original is unchanged
    with pytest.raises(ValueError, match="no weight average"):
        last.without_average()


# ------------------------------------------------------------------ the stackedMNIST mode count

def stacked_classification(labels):
    """A Classification of stacked images whose classes are `labels` (N,), every digit certain."""
    labels = torch.as_tensor(labels)
    digits = torch.stack([labels % 10, labels // 10 % 10, labels // 100], 1)
    return Classification(digits, torch.ones(len(labels), 3))


def test_mode_count_and_kl_on_constructed_class_lists():
    every_class_26_times = stacked_classification(torch.arange(1000).repeat(26))
    assert every_class_26_times.modes() == 1000
    assert every_class_26_times.kl_to_uniform() == pytest.approx(0.0, abs=1e-12)
    one_class = stacked_classification(torch.full((26_000,), 421))
    assert one_class.modes() == 1 and one_class.kl_to_uniform() == pytest.approx(math.log(1000))
    half = stacked_classification(torch.arange(500).repeat(4))              # 500 classes equally
    assert half.modes() == 500 and half.kl_to_uniform() == pytest.approx(math.log(2))


# ------------------------------------------------------------------------- recipes, smoke size

@pytest.mark.parametrize("name", GAN_RECIPES)
def test_each_gan_recipe_trains_in_smoke_size(name, verifier_only, smoke):
    s = recipes.GAN_SETTINGS[name]
    result = recipes.RECIPES[name](torch.device("cpu"), None)
    model = result.model
    assert isinstance(model, GAN) and model.pack == s["pack"] and model.channels == s["mode"].channels
    assert result.data_mode == s["mode"].name
    assert model.sample(4, generator=gen()).shape == (4, s["mode"].channels, 28, 28)
    assert model.fixed_noise_snapshots().shape[0] == 1                  # one (smoke) epoch
    assert {"predictability", "coverage", "modes", "kl", "samples", "epochs"} <= set(result.metrics)
    keys = {"train_loss_critic", "train_wasserstein", "train_penalty"} if s["n_critic"] else \
        {"train_loss_d", "train_loss_g", "train_d_x", "train_d_g_z"}
    assert keys <= set(result.history["epochs"][0])


def test_training_the_gans_from_the_command_line_in_smoke_mode_saves_nothing(verifier_only, smoke):
    from helpers.__main__ import main
    assert main(["train", *GAN_RECIPES]) == 0
    assert sorted(p.name for p in verifier_only.iterdir()) == ["manifest.json", "verification_net.pt"]


def test_the_gan_evaluation_gives_the_spread_over_sampling_seeds(verifier_only, smoke):
    gan = tiny_gan(channels=3)
    checkpoints.save("pacgan_stacked", gan)
    out = recipes.evaluate("pacgan_stacked")
    assert [r["seed"] for r in out["by_seed"]] == list(recipes.GAN_SAMPLE_SEEDS)
    assert {"mean", "sd"} == set(out["modes"]) and out["by_seed"][0]["samples"] == 256
    assert "evaluation" not in checkpoints.entry("pacgan_stacked")            # smoke mode stores nothing
    assert "last_step" not in out


def test_the_evaluation_of_a_weight_average_also_scores_the_last_steps_generator(verifier_only, smoke):
    gan = tiny_gan(channels=3, ema=0.9)
    with torch.no_grad():
        for p in gan.generator.parameters():
            p.mul_(-1.0)                                   # the trained generator differs from its average
    checkpoints.save("dcgan_stacked", gan)
    out = recipes.evaluate("dcgan_stacked")
    last = out["last_step"]
    assert [r["seed"] for r in last["by_seed"]] == [r["seed"] for r in out["by_seed"]]
    expected = recipes.gan_sample_scores(gan.without_average(), recipes.GAN_SAMPLE_SEEDS[0])
    assert last["by_seed"][0] == expected and out["by_seed"][0] == recipes.gan_sample_scores(gan)


def test_a_held_out_classifier_judges_the_mono_gans(verifier_only, smoke):
    from helpers.recipes import gans
    gans.heldout_classifier.cache_clear()
    net, accuracy = gans.heldout_classifier()
    assert type(net).__name__ == "MLPClassifier" and not net.training and 0.0 <= accuracy <= 1.0
    checkpoints.save("dcgan_mnist", tiny_gan())
    out = recipes.evaluate("dcgan_mnist:heldout")
    assert out["samples"] == 256 and 0.0 <= out["heldout_confident"] <= 1.0
    assert 0.0 <= out["heldout_confident_real"] <= 1.0 and out["classifier_test_accuracy"] == round(accuracy, 4)
    assert set(recipes.evaluations_of("dcgan_mnist")) == {"dcgan_mnist", "dcgan_mnist:heldout"}
    gans.heldout_classifier.cache_clear()
