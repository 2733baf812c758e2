"""`fit` with several optimisers: a toy GAN on 2-D Gaussians, resumed after an interruption."""
import pytest
import torch
from torch import nn

from helpers.training import EarlyStopping, ResumeMismatchError, fit

N_CRITIC = 3


class ToyGAN(nn.Module):
    """Generator: an affine map of 2-D noise. Discriminator: a small MLP with a logit output."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.generator = nn.Linear(2, 2)
        self.discriminator = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))


def gan_step(model, batch, optimizers, iteration):
    """One discriminator update per iteration; one generator update every N_CRITIC iterations."""
    (real,) = batch
    bce = nn.functional.binary_cross_entropy_with_logits
    fake = model.generator(torch.randn(len(real), 2))
    d_real, d_fake = model.discriminator(real), model.discriminator(fake.detach())
    d_loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
    optimizers["d"].zero_grad(set_to_none=True)
    d_loss.backward()
    optimizers["d"].step()
    logged = {"d_loss": d_loss, "d_x": torch.sigmoid(d_real).mean(), "d_g_z": torch.sigmoid(d_fake).mean()}
    if iteration % N_CRITIC == N_CRITIC - 1:
        g_out = model.discriminator(model.generator(torch.randn(len(real), 2)))
        g_loss = bce(g_out, torch.ones_like(g_out))       # the non-saturating generator loss
        optimizers["g"].zero_grad(set_to_none=True)
        g_loss.backward()
        optimizers["g"].step()
        logged["g_updates"] = torch.tensor(1.0)
    else:
        logged["g_updates"] = torch.tensor(0.0)
    return logged


def target(n=512):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, 2, generator=g) * torch.tensor([0.5, 2.0]) + torch.tensor([3.0, -1.0]),)


def optimisers(model, d_lr=1e-2, g_lr=1e-2):
    return {"d": torch.optim.Adam(model.discriminator.parameters(), lr=d_lr),
            "g": torch.optim.Adam(model.generator.parameters(), lr=g_lr, betas=(0.5, 0.9))}


def train(model, epochs=4, d_lr=1e-2, g_lr=1e-2, **kwargs):
    return fit(model, step=gan_step, optimizers=optimisers(model, d_lr, g_lr), train_data=target(), epochs=epochs,
               batch_size=64, seed=3, progress=False, log_every=4, **kwargs)


def test_gan_step_logs_per_step_scalars_and_updates_the_generator_every_third_step():
    model = ToyGAN()
    h = train(model, epochs=2)
    assert {"train_d_loss", "train_d_x", "train_d_g_z"} <= set(h.epochs[-1])
    # 8 batches per epoch, 16 iterations: the generator moved at iterations 3, 6, ..., 15
    assert h.epochs[0]["train_g_updates"] + h.epochs[1]["train_g_updates"] == pytest.approx(5 / 8)
    assert [s["step"] for s in h.steps] == [1, 5, 9, 13]
    assert {"d_loss", "d_x", "d_g_z"} <= set(h.steps[0])


def test_the_toy_gan_learns_the_target_mean():
    model = ToyGAN()
    train(model, epochs=60, d_lr=0.02, g_lr=0.05)
    with torch.no_grad():
        samples = model.generator(torch.randn(4000, 2, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(samples.mean(0), torch.tensor([3.0, -1.0]), atol=0.4)
    assert samples.std(0)[1] > 2 * samples.std(0)[0]            # the wide axis is the wide one


def test_interrupted_gan_training_resumes_to_identical_parameters(tmp_path):
    reference = ToyGAN()
    train(reference, epochs=4)

    seen = []

    def crash_in_epoch_3(model):            # after epoch 3's training, before its state is saved
        seen.append(1)
        if len(seen) == 3:
            raise KeyboardInterrupt
        return {}
    resume = tmp_path / "gan.pt"
    with pytest.raises(KeyboardInterrupt):
        train(ToyGAN(), epochs=4, resume_path=resume, validate=crash_in_epoch_3)
    assert resume.exists()
    resumed = ToyGAN()                               # a new process starts from fresh weights
    h = train(resumed, epochs=4, resume_path=resume)
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3, 4]
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert not resume.exists()


def test_a_resume_file_from_other_settings_is_refused(tmp_path):
    resume = tmp_path / "gan.pt"
    epochs_done = []

    def crash_in_epoch_2(model):
        epochs_done.append(1)
        if len(epochs_done) == 2:
            raise KeyboardInterrupt
        return {}
    with pytest.raises(KeyboardInterrupt):
        train(ToyGAN(), epochs=4, resume_path=resume, validate=crash_in_epoch_2)
    assert resume.exists()
    with pytest.raises(ResumeMismatchError, match=r"epochs = 4.*this run has epochs = 5.*delete"):
        train(ToyGAN(), epochs=5, resume_path=resume)
    with pytest.raises(ResumeMismatchError, match="recipe"):
        train(ToyGAN(), epochs=4, resume_path=resume, fingerprint={"recipe": "v2"})


def test_validation_callback_and_early_stopping_on_its_value():
    calls = []

    def validate(model):
        calls.append(model.training)
        return {"val_score": float(len(calls) == 1)}       # best at epoch 1, never again
    h = train(ToyGAN(), epochs=10, validate=validate,
              early_stopping=EarlyStopping(patience=2, monitor="val_score", mode="max"))
    assert calls == [False, False, False] and h.stopped_early and h.best_epoch == 1


class FrozenDecoderFit(nn.Module):
    """Per-image parameters fitted against a frozen decoder that holds batch norm."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.codes = nn.Parameter(torch.zeros(32, 4))
        self.decoder = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))
        self.decoder.requires_grad_(False)


def test_fit_does_not_change_a_frozen_part():
    model = FrozenDecoderFit()
    before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    targets = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))

    def loss(m, batch):
        (index,) = batch
        return ((m.decoder(m.codes[index]) - targets[index]) ** 2).sum(1).mean()
    fit(model, loss, (torch.arange(32),), epochs=5, batch_size=8, lr=0.1, progress=False)
    for k, v in model.decoder.state_dict().items():
        assert torch.equal(v, before[k]), k                    # running stats did not move
    assert model.codes.abs().sum() > 0


def test_step_and_loss_are_exclusive():
    with pytest.raises(TypeError, match="either loss_fn"):
        fit(ToyGAN(), lambda m, b: 0, target(), step=gan_step, optimizers=optimisers(ToyGAN()))
    with pytest.raises(TypeError, match="dict of optimizers"):
        fit(ToyGAN(), step=gan_step, train_data=target())
