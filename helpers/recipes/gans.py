"""The GANs of notebooks 09 and 10: DCGAN on MNIST, stacked DCGAN and PacGAN2, WGAN-GP; recipes
and their stored multi-seed evaluations."""
from __future__ import annotations

import functools

import torch

from .. import checkpoints, settings
from ..data import DataMode, MNISTData
from .registry import EVALUATIONS, Trained, _rounded, load_verifier, recipe


# ==================================================================================================
# --- GANs (notebooks 09 and 10): DCGAN, stacked DCGAN and PacGAN2, WGAN-GP -------------
# Every GAN trains through `divergences.fit_gan` (the one `fit`, with `dcgan_step` or `wgan_gp_step`)
# on all 60,000 training images of its data mode, keeps the decoding of 16 fixed codes after every
# epoch in its state_dict (`GAN.take_snapshot`, for the notebooks' progress grids), resumes from
# its last finished epoch, and is scored at the end with the verification net on samples from
# torch.Generator().manual_seed(0). Budgets: CPU time per epoch measured in short runs of the
# recipe on one core (OMP_NUM_THREADS=1, AMD EPYC, other jobs running), times the epochs; with
# two cores a run takes less. `python -m helpers evaluate NAME` stores the spread over the seeds.

GAN_MONO_SAMPLES = 10_000       # scored samples of a mono GAN (as notebooks 02 and 03's generators)
GAN_STACKED_SAMPLES = 26_000    # the stackedMNIST mode count of VEEGAN and PacGAN: 26,000 samples
GAN_SAMPLE_SEEDS = (0, 1, 2)    # sampling seeds of the stored evaluation; the training metrics use the first

GAN_SETTINGS = {
    # CIL Series 9 Problem 3 follows the TensorFlow DCGAN tutorial, which trains on MNIST's grey
    # values (scaled to [-1, 1] for its tanh); our generator ends in a sigmoid, so grey values in
    # [0, 1]: MONO_FLOAT_COMPLETE. Adam 2e-4 and betas (0.5, 0.999) as Radford et al., batch 64 (theirs 128).
    # A generator one 3x3 block deeper than the stacked GANs' (blocks=1; the tutorial's has three
    # convolutions too) whose samples come from a weight average (ema 0.999, about the last 1,000
    # generator steps): the two-layer generator without averaging reached predictability 0.83
    # after 30 epochs, with many malformed digits.
    "dcgan_mnist": dict(mode=DataMode.MONO_FLOAT_COMPLETE, pack=1, d_norm="batch", n_critic=None,
                        lr=2e-4, betas=(0.5, 0.999), batch_size=64, epochs=30, autocast="bf16",
                        blocks=1, ema=0.999),
    # stackedMNIST (three grey MNIST training digits as R, G, B; MNISTData's 60,000, seed 0) with
    # dcgan_mnist's networks (3 channels in and out), optimiser, bf16 and weight average, 25 epochs;
    # the evaluation also scores the last-step generator, so the average is judged within one run
    "dcgan_stacked": dict(mode=DataMode.COLOR_FLOAT_COMPLETE, pack=1, d_norm="batch", n_critic=None,
                          lr=2e-4, betas=(0.5, 0.999), batch_size=64, epochs=25, autocast="bf16",
                          blocks=1, ema=0.999),
    # the same with the one change against mode collapse: PacGAN2 (the discriminator judges pairs)
    "pacgan_stacked": dict(mode=DataMode.COLOR_FLOAT_COMPLETE, pack=2, d_norm="batch", n_critic=None,
                           lr=2e-4, betas=(0.5, 0.999), batch_size=64, epochs=25, autocast="bf16",
                           blocks=1, ema=0.999),
    # WGAN-GP with dcgan_mnist's generator and weight average; the critic has no normalisation
    # (the penalty is per sample), lambda 10, n_critic 5, Adam 1e-4 with betas (0.5, 0.9) as
    # Gulrajani et al.'s released MNIST code (their paper gives (0, 0.9)), batch 64; the DCGAN's
    # 30 epochs, so both see the same 1.8 million real images at about the same wall time
    "wgan_gp_mnist": dict(mode=DataMode.MONO_FLOAT_COMPLETE, pack=1, d_norm=None, n_critic=5, penalty=10.0,
                          lr=1e-4, betas=(0.5, 0.9), batch_size=64, epochs=30, autocast="bf16",
                          blocks=1, ema=0.999),
}


@torch.no_grad()
def gan_sample_scores(model, seed: int = GAN_SAMPLE_SEEDS[0]) -> dict:
    """The verifier's view of a generator's samples (n, C, 28, 28), drawn from
    torch.Generator().manual_seed(seed): n = 10,000 mono or 26,000 stacked (256 under DGM_SMOKE=1);
    predictability and coverage at IT3030's tolerance (0.8 mono, 0.5 stacked), and modes and KL to
    uniform with every sample counted by its argmax class (VEEGAN's and PacGAN's protocol)."""
    from ..metrics import draw_samples, generation_quality
    n = 256 if settings.smoke_mode() else (GAN_STACKED_SAMPLES if model.channels == 3 else GAN_MONO_SAMPLES)
    samples = draw_samples(model, n, torch.Generator().manual_seed(seed), progress=True)
    return {"samples": n, "seed": seed, **_rounded(generation_quality(load_verifier(), samples), 4)}


def fit_gan_recipe(name: str, images: torch.Tensor, s: dict, width: int, device, resume, latent_dim: int = 100,
                   monitor=None):
    """A `models.GAN` (`latent_dim`, `width`, the channels and size of images (N, C, S, S), keeping a
    snapshot per epoch) trained on the images with `divergences.fit_gan` and the settings `s` (pack,
    d_norm, n_critic (None: `dcgan_step`, else `wgan_gp_step` with `penalty`), lr, betas,
    batch_size, epochs, and optionally ema, the decay of a weight average of the generator, blocks,
    the generator's extra depth, and autocast), resumable from `resume`; `monitor` as in `fit_gan`.
    Returns the model in eval mode and the History."""
    from ..divergences import dcgan_step, fit_gan, wgan_gp_step
    from ..models import GAN
    model = GAN(channels=images.shape[1], latent_dim=latent_dim, width=width, image_size=images.shape[-1],
                pack=s.get("pack", 1), d_norm=s["d_norm"], snapshots=s["epochs"], ema=s.get("ema", 0.0),
                blocks=s.get("blocks", 0)).to(device)
    step = (functools.partial(wgan_gp_step, n_critic=s["n_critic"], penalty=s["penalty"]) if s.get("n_critic")
            else dcgan_step)
    history = fit_gan(model, images, step, lr=s["lr"], betas=s["betas"], epochs=s["epochs"], batch_size=s["batch_size"],
                      resume_path=resume, fingerprint={"recipe": name, "settings": s}, desc=name,
                      autocast=s.get("autocast"), monitor=monitor)
    return model.eval(), history


def _train_gan(name: str, device, resume) -> Trained:
    """Train GAN_SETTINGS[name] with `divergences.fit_gan` (resumable from `resume`); score its samples."""
    s = GAN_SETTINGS[name]
    x, _ = MNISTData(s["mode"]).get_full_data_set(training=True)
    model, history = fit_gan_recipe(name, x, s, width=64, device=device, resume=resume)
    checkpoints.round_to_storage(model, "float16")           # scored as stored: files under 5 MB
    metrics = {**gan_sample_scores(model), "epochs": len(history.epochs), "images_per_epoch": len(x),
               "batch_size": s["batch_size"]}
    return Trained(model, metrics, history.to_dict(), s["mode"].name, storage="float16")


@recipe("dcgan_mnist")
def _dcgan_mnist(device, resume) -> Trained:
    """CIL Series 9 Problem 3: a DCGAN (z of size 100, transposed convolutions 7 -> 14 -> 28, a
    CNN discriminator with batch norm) on grey MNIST, BCE with the non-saturating generator loss,
    30 epochs (28,140 generator steps) under bf16 autocast (1.7x faster than float32 on this CPU,
    trained as well in a side-by-side run: benchmarks/gan_precision.py). Budget: about 85 s an
    epoch on one quiet core, 45 min for the 30, plus 1 min of scoring."""
    return _train_gan("dcgan_mnist", device, resume)


@recipe("dcgan_stacked")
def _dcgan_stacked(device, resume) -> Trained:
    """The plain DCGAN on stackedMNIST (3 channels, 1000 modes), for the VEEGAN/PacGAN mode count:
    dcgan_mnist's networks (3 channels in and out), optimiser, bf16 and weight average.
    Budget: 25 epochs of 60,000 images (PacGAN's: 50 of 128,000) at about 2 min of one core each
    (another training on the other core), plus 8 min of scoring 2 x 3 seeds of 26,000 samples."""
    return _train_gan("dcgan_stacked", device, resume)


@recipe("pacgan_stacked")
def _pacgan_stacked(device, resume) -> Trained:
    """PacGAN2 on stackedMNIST: dcgan_stacked with a discriminator that judges two samples stacked
    along the channels (Lin et al. 2018); the same data, epochs, optimiser and weight average.
    Budget: 25 epochs at about 1.6 min of one core each (the discriminator judges half as many
    inputs), plus 8 min of scoring."""
    return _train_gan("pacgan_stacked", device, resume)


@recipe("wgan_gp_mnist")
def _wgan_gp_mnist(device, resume) -> Trained:
    """WGAN-GP on grey MNIST with the DCGAN's generator and a critic without normalisation:
    lambda 10, 5 critic steps per generator step, Adam 1e-4 betas (0.5, 0.9), batch 64, 30 epochs
    (28,140 critic and 5,628 generator steps) under bf16 autocast (1.6x faster than float32, see
    dcgan_mnist). Budget: about 95 s an epoch on one quiet core, 50 min for the 30."""
    return _train_gan("wgan_gp_mnist", device, resume)


def _seed_summary(model) -> dict:
    """`gan_sample_scores` at every seed of GAN_SAMPLE_SEEDS, and the mean and standard deviation
    over the seeds of predictability, coverage, modes and KL (the spread of the sampling)."""
    runs = [gan_sample_scores(model, seed) for seed in GAN_SAMPLE_SEEDS]
    out = {"by_seed": runs}
    for key in ("predictability", "coverage", "modes", "kl"):
        values = torch.tensor([float(r[key]) for r in runs], dtype=torch.float64)
        out[key] = {"mean": round(values.mean().item(), 4), "sd": round(values.std().item(), 4)}
    return out


def _evaluate_gan(model) -> dict:
    """`_seed_summary` of the GAN's samples; for a GAN with a weight average (ema > 0), also under
    "last_step" the same summary of its trained generator (`GAN.without_average`), so the average
    is compared with the generator of the same run at the same seeds."""
    out = _seed_summary(model)
    if model.ema:
        out["last_step"] = _seed_summary(model.without_average())
    return out


HELDOUT_SEED = 7           # the held-out classifier's training seed


def train_heldout_mlp(make_net, train: tuple, test: tuple, epochs: int, seed: int, desc: str,
                      device_name: str = "cpu"):
    """Build a judge with `make_net()` (e.g. an `nets.MLPClassifier`) and train it on the images and
    labels `train` (Adam 1e-3, batch 128), its initial weights and batches from `seed` alone (also
    under a caller's no_grad). Returns (net in eval mode on `device_name`, its accuracy on `test`)."""
    from ..metrics import batched
    from ..training import fit
    from ..verification import classification_loss
    with settings.forked_rng(seed), torch.enable_grad():
        net = make_net().to(device_name)
        fit(net, classification_loss, train, epochs=epochs, batch_size=128, lr=1e-3, seed=seed, desc=desc,
            progress=False)
    net.eval()
    x, y = test
    accuracy = (batched(net, x.to(device_name), 1000).argmax(1).cpu() == y).float().mean().item()
    return net, accuracy


@functools.lru_cache(maxsize=1)
def heldout_classifier(device_name: str = "cpu"):
    """A classifier the GANs were never tuned against: `nets.MLPClassifier` (784-256-256-10) trained
    for 3 epochs (`train_heldout_mlp`, seed HELDOUT_SEED) on the 60,000 grey MNIST training images,
    with none of the verification net's outlier training. Returns (net in eval mode, its test
    accuracy); trained once per process (about 30 s on one core)."""
    from ..nets import MLPClassifier
    data = MNISTData(DataMode.MONO_FLOAT_COMPLETE)
    return train_heldout_mlp(MLPClassifier, data.get_full_data_set(training=True),
                             data.get_full_data_set(training=False), epochs=3, seed=HELDOUT_SEED,
                             desc="held-out MLP", device_name=device_name)


@torch.no_grad()
def heldout_scores(model, tolerance: float = 0.8) -> dict:
    """The samples of a mono GAN judged by `heldout_classifier`: the fraction of GAN_MONO_SAMPLES
    samples (seed 0) it classifies with confidence at least `tolerance`, beside the same fraction of
    the real test images, and the verification net's predictability of the same samples; a check
    that sample quality was not tuned to one classifier."""
    from ..metrics import batched, draw_samples, generation_quality
    net, accuracy = heldout_classifier(str(model.device))
    n = 256 if settings.smoke_mode() else GAN_MONO_SAMPLES
    samples = draw_samples(model, n, torch.Generator().manual_seed(GAN_SAMPLE_SEEDS[0]))
    xt, _ = MNISTData(DataMode.MONO_FLOAT_COMPLETE).get_full_data_set(training=False)

    def confident(images):
        probs = batched(lambda b: net(b.to(model.device)).softmax(1).cpu(), images, 2000)
        return (probs.max(1).values >= tolerance).float().mean().item()
    return _rounded({"classifier": "MLP 784-256-256-10, 3 epochs, seed 7", "classifier_test_accuracy": accuracy,
                     "tolerance": tolerance, "samples": n, "seed": GAN_SAMPLE_SEEDS[0],
                     "heldout_confident": confident(samples), "heldout_confident_real": confident(xt),
                     "verifier_predictability": generation_quality(load_verifier(), samples, tolerance)["predictability"]},
                    4)


for _name in GAN_SETTINGS:
    EVALUATIONS[_name] = _evaluate_gan
for _name in ("dcgan_mnist", "wgan_gp_mnist"):
    EVALUATIONS[f"{_name}:heldout"] = heldout_scores
# --- end of the GAN section -------------------------------------------------------------------------
