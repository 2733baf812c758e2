"""SVHN end to end (notebooks 08 and 11, IFT6135 Problem 3): the SVHN classifier and FID, the SVHN
VAEs, the WGAN-GP; recipes and evaluations."""
from __future__ import annotations

import functools

import torch

from .. import checkpoints, settings
from ..models import VAE, model_loss
from ..training import EarlyStopping, fit
from ..verification import classification_loss
from .registry import (
    EVALUATIONS, Trained, _rounded, likelihood_stopping, one_cycle, recipe,
)
from .autoencoders import FLOW_PRIOR
from .gans import fit_gan_recipe, train_heldout_mlp
from .fid import (
    FID_SAMPLES, FID_SEED, SVHN_CLASSIFIER, FIDReference, load_svhn_data, svhn_classifier_net, svhn_sample_fid,
)


# ==================================================================================================
# --- SVHN end to end and FID (IFT6135 Problem 3, notebook 11) ---------------------------
# Data: `svhn_data.load_svhn()`, full SVHN when it is on disk, else the 10,000-image SVHN sample split
# 7,000 / 1,000 / 2,000 with seed 0 (train / validation / held-out); the manifest's data_mode says
# which the weights were trained on. svhn_classifier gives the SVHN FID features; vae_svhn and
# wgan_gp_svhn are Problem 3's two models: latent size 100 and one generator architecture
# (`nets.DCGANGenerator` at 32x32, width SVHN_WIDTH; the VAE's decoder is the same network without
# its final sigmoid, which the unit-variance Gaussian likelihood applies as its mean g(z)).
# Budgets: CPU time per step measured with OMP_NUM_THREADS=1 while two other trainings ran on the
# two cores (process time, so the sharing is not counted), times the steps.

SVHN_LATENT = 100            # IFT6135 Problem 3: latent size 100 for both models
SVHN_WIDTH = 32              # generator width w: 100 -> 2w x 8 x 8 -> w x 16 x 16 -> 3 x 32 x 32


def _svhn_data_mode(svhn) -> str:
    """The manifest's data_mode of an SVHN checkpoint: which SVHN, and the split it was trained on."""
    sizes = svhn.split
    n = sum(sizes.values())
    what = ("full SVHN (official train and test sets)" if svhn.source == "full"
            else f"SVHN sample ({n:,} SVHN test images, not the full dataset)")
    return (f"{what}, split with seed {svhn.seed} into {sizes['train']:,} train / {sizes['val']:,} validation / "
            f"{sizes['test']:,} held-out images; trained on the train part")


@recipe(SVHN_CLASSIFIER)
def _svhn_classifier(device, resume) -> Trained:
    """The SVHN classifier whose penultimate layer (128 units) gives the SVHN FID features (IFT6135
    Problem 3 scores with a classifier trained on SVHN): `DigitClassifier(width=32)` on 3-channel
    32x32 images, trained on the SVHN train part with random shifts of up to 2 pixels, AdamW (weight
    decay 5e-4), a one-cycle learning rate (peak 3e-3), batch 128, 24 epochs, stopping after 4
    epochs without a better validation loss (the best epoch's weights kept). Metrics: accuracy on
    the validation and held-out parts, and the real-data FID floor (the first 1,000 train images
    against the held-out part). Budget: 24 epochs of 7,000 images at 21 s of one core each (0.39 s
    per batch of 128), plus about 10 s of metrics: about 9 min on one core."""
    from ..verification import random_shift
    svhn = load_svhn_data()
    model = svhn_classifier_net().to(device)
    history = fit(model, classification_loss, svhn.train, svhn.val, epochs=24, batch_size=128,
                  optimizer=torch.optim.AdamW(model.parameters(), weight_decay=5e-4), scheduler=one_cycle(3e-3),
                  augment=random_shift, early_stopping=EarlyStopping(patience=4), resume_path=resume,
                  desc=SVHN_CLASSIFIER)
    model.eval()
    from ..frechet import calculate_fid_score, feature_batches
    from ..metrics import batched
    metrics = {}
    for part in ("val", "test"):
        x, y = svhn.part(part)
        metrics[f"{part}_accuracy"] = (batched(model, x, 500).argmax(1) == y).float().mean().item()
    n_real = min(FID_SAMPLES, len(svhn.train[0]))
    metrics["real_fid"] = calculate_fid_score(feature_batches(model.features, svhn.train[0][:n_real]),
                                              feature_batches(model.features, svhn.test[0]))
    metrics.update({"real_fid_images": n_real, "test_images": len(svhn.test[0]), "train_images": len(svhn.train[0]),
                    "epochs": len(history.epochs), "best_epoch": history.best_epoch, "data_source": svhn.source})
    return Trained(model, _rounded(metrics, 4), history.to_dict(), _svhn_data_mode(svhn))


SVHN_SIGMA = 0.2        # pixel sd of vae_svhn's p(x|z): about SVHN's per-channel sd (the sheet has 1)
ACTIVE_KL = 0.01        # a latent coordinate is active when its mean KL exceeds this many nats


@torch.no_grad()
def kl_per_dimension(model, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """(N, C, S, S) -> (L,) the mean over the images of KL(q(z_j | x) || N(0, 1)) per latent
    coordinate j (closed form, diagonal Gaussian q). For a VAE with the N(0, I) prior these sum to
    its KL term; for another prior they measure how far q moves from N(0, 1) per coordinate."""
    total = None
    for xb in x.split(batch):
        mu, logvar = model.posterior(xb)
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1.0 - logvar)
        total = kl.sum(0) if total is None else total + kl.sum(0)
    return (total / len(x)).cpu()


def _svhn_vae(name: str, device, resume, prior: dict | None = None, sigma: float = SVHN_SIGMA) -> Trained:
    """vae_svhn's training and metrics (below); `prior` ({"prior": name, "prior_kwargs": {...}})
    replaces N(0, I) and nothing else (the VAE builds its prior last, so the encoder's and decoder's
    initial weights, the batches and the noise draws are the same); `sigma` is the pixel standard
    deviation of p(x|z) = N(x; g(z), sigma^2 I)."""
    svhn = load_svhn_data()
    lik_kwargs = {} if sigma == 1.0 else {"sigma": sigma}
    model = VAE(channels=3, latent_dim=SVHN_LATENT, width=SVHN_WIDTH, likelihood="unit_gaussian",
                likelihood_kwargs=lik_kwargs, arch="dcgan", image_size=32, **(prior or {})).to(device)
    history = fit(model, model_loss, svhn.train[:1], svhn.val[:1], epochs=100, batch_size=64, lr=1e-3,
                  early_stopping=likelihood_stopping(), resume_path=resume, desc=name)
    model.eval()
    metrics = {"epochs": len(history.epochs), "best_epoch": history.best_epoch, "train_images": len(svhn.train[0])}
    with torch.no_grad():
        for part in ("val", "test"):
            g = torch.Generator().manual_seed(0)
            terms = [model.elbo_terms(xb, generator=g) for xb in svhn.part(part)[0].split(1000)]
            for key in ("elbo", "rec", "kl"):
                metrics[f"{part}_{key}"] = torch.cat([t[key].cpu() for t in terms]).mean().item()
    kl_dims = kl_per_dimension(model, svhn.test[0])
    metrics.update(sigma=sigma, active_dims=int((kl_dims > ACTIVE_KL).sum()), active_kl_threshold=ACTIVE_KL)
    metrics.update(svhn_sample_fid(model))
    return Trained(model, _rounded(metrics, 3), history.to_dict(), _svhn_data_mode(svhn))


@recipe("vae_svhn")
def _vae_svhn(device, resume) -> Trained:
    """IFT6135 Problem 3's VAE on SVHN with one stated departure: p(x|z) = N(x; g(z), sigma^2 I) with
    sigma = SVHN_SIGMA = 0.2 instead of the sheet's 1 (the sheet's model on pixels scaled by 1 / sigma;
    with sigma = 1 on pixels in [0, 1] the likelihood is so flat that the posterior collapses, see
    vae_svhn_unit). Otherwise as the sheet: latent size 100, g(z) =
    sigmoid(decoder(z)), the decoder `nets.DCGANDecoder` (wgan_gp_svhn's generator without its final
    sigmoid) of width 32, the encoder two stride-2 convolutions (`nets.ConvEncoder`, arch "dcgan"),
    q(z|x) a diagonal Gaussian (log-variance clamped to [-12, 8]). Trained on the SVHN train part,
    Adam 1e-3, batch 64, validated on the validation part after every epoch and stopped when the
    validation -ELBO has not improved by 0.1 nats for 3 epochs (at most 100 epochs; the best epoch's
    weights kept). Metrics: one-sample ELBO (with its reconstruction and KL terms) on the validation
    and held-out parts, and FID of 1,000 samples (decoder means g(z), z ~ N(0, I)). Budget: 0.055 s
    of one core per batch of 64, 110 batches and a validation pass per epoch, about 6.5 s an epoch:
    at most 11 min on one core for 100 epochs (the criterion usually ends it sooner), plus 15 s of metrics."""
    return _svhn_vae("vae_svhn", device, resume)


@recipe("vae_svhn_unit")
def _vae_svhn_unit(device, resume) -> Trained:
    """The ablation of vae_svhn: the sheet's p(x|z) = N(x; g(z), I) on pixels in [0, 1] (sigma = 1),
    everything else the same. Its posterior collapses to a few active coordinates."""
    return _svhn_vae("vae_svhn_unit", device, resume, sigma=1.0)


@recipe("vae_svhn_flow")
def _vae_svhn_flow(device, resume) -> Trained:
    """VU Assignment 4A's SVHN pair: vae_svhn with p(z) the RealNVP flow of vae_mono_flow
    (FLOW_PRIOR: 8 affine couplings, hidden width 128, over the 100 latent coordinates), trained
    jointly on the ELBO with the Monte-Carlo KL; data, split, networks, initial weights, optimiser
    and stopping as vae_svhn. Budget: vae_svhn's plus the flow's share, about 12 min on one core."""
    return _svhn_vae("vae_svhn_flow", device, resume, prior=FLOW_PRIOR)


SVHN_IS_K = 200          # importance samples per image (IFT6135's K), the encoder's q as proposal
SVHN_IS_SEED = 0


def _evaluate_svhn_vae(model) -> dict:
    """The importance-sampled log p(x) (K = SVHN_IS_K, proposal q(z|x)) of every held-out SVHN image
    (`metrics.importance_log_px`, torch.Generator().manual_seed(SVHN_IS_SEED)), beside the one-sample
    ELBO of the same images: mean, standard error, and the per-image values for paired comparisons;
    the mean KL term and reconstruction term of that ELBO; the mean KL(q(z_j|x) || N(0, 1)) of each
    latent coordinate over the same images with the count of active coordinates (above ACTIVE_KL
    = 0.01 nats, and above 0.1); and the FID of FID_SAMPLES samples (`svhn_sample_fid`), so that
    every SVHN-VAE number a notebook prints comes from this one record."""
    from ..metrics import elbo, importance_log_px, mean_and_se
    svhn = load_svhn_data()
    x = svhn.test[0][:256] if settings.smoke_mode() else svhn.test[0]
    k = 4 if settings.smoke_mode() else SVHN_IS_K
    log_px = importance_log_px(model, x.to(model.device), k, generator=torch.Generator().manual_seed(SVHN_IS_SEED),
                               progress=True)
    elbos = elbo(model, x.to(model.device), generator=torch.Generator().manual_seed(SVHN_IS_SEED))
    with torch.no_grad():
        g = torch.Generator().manual_seed(SVHN_IS_SEED)
        terms = [model.elbo_terms(xb, generator=g) for xb in x.split(1000)]
    kl_dims = kl_per_dimension(model, x)
    out = {"images": len(x), "importance_samples": k, "seed": SVHN_IS_SEED,
           "data": f"SVHN ({svhn.source}), held-out part of the seed-{svhn.seed} split",
           "sigma": model.likelihood.sigma,
           "test_kl_term": round(torch.cat([t["kl"].cpu() for t in terms]).mean().item(), 3),
           "test_rec_term": round(torch.cat([t["rec"].cpu() for t in terms]).mean().item(), 3),
           "kl_per_dimension": [round(v, 5) for v in kl_dims.tolist()],
           "active_dims": int((kl_dims > ACTIVE_KL).sum()), "active_dims_0.1": int((kl_dims > 0.1).sum()),
           "active_kl_threshold": ACTIVE_KL, **svhn_sample_fid(model)}
    for key, values in (("test_log_px", log_px.cpu().double()), ("test_elbo", elbos.cpu().double())):
        mean, se = mean_and_se(values)
        out[key] = {"mean": round(mean, 3), "se": round(se, 3), "values": [round(v, 2) for v in values.tolist()]}
    return out


SVHN_HELDOUT_SEED = 7       # the held-out SVHN classifier's training seed


@functools.lru_cache(maxsize=1)
def svhn_heldout_classifier(device_name: str = "cpu"):
    """A second SVHN judge that nothing was tuned against: `nets.MLPClassifier` on per-image
    standardised pixels (3072-512-512-10, no convolutions, nothing shared with svhn_classifier),
    trained for 20 epochs (`gans.train_heldout_mlp`, seed SVHN_HELDOUT_SEED) on the train part.
    Returns (net in eval mode, its accuracy on the held-out part); trained once per process (about
    40 s on one core)."""
    from ..nets import MLPClassifier
    svhn = load_svhn_data()
    return train_heldout_mlp(lambda: MLPClassifier(in_features=3 * 32 * 32, hidden=512, standardize=True),
                             svhn.train, svhn.test, epochs=2 if settings.smoke_mode() else 20,
                             seed=SVHN_HELDOUT_SEED, desc="held-out SVHN MLP", device_name=device_name)


@torch.no_grad()
def svhn_heldout_scores(model, tolerance: float = 0.8) -> dict:
    """The FID samples of an SVHN model (FID_SAMPLES, seed FID_SEED; 256 under DGM_SMOKE=1) and as
    many held-out images, judged by `svhn_heldout_classifier`: the fraction it reads with confidence
    at least `tolerance`, and the fraction on which it names the same digit as svhn_classifier
    (two unrelated classifiers agree on real digits, rarely on noise)."""
    from ..metrics import batched, draw_samples
    device = str(model.device)
    net, accuracy = svhn_heldout_classifier(device)
    judge = checkpoints.load(SVHN_CLASSIFIER, device)
    n = 256 if settings.smoke_mode() else FID_SAMPLES
    samples = draw_samples(model, n, torch.Generator().manual_seed(FID_SEED))
    real = load_svhn_data().test[0][:n]

    def view(images):
        probs = batched(lambda b: net(b.to(device)).softmax(1).cpu(), images, 1000)
        other = batched(lambda b: judge(b.to(device)).argmax(1).cpu(), images, 1000)
        return ((probs.max(1).values >= tolerance).float().mean().item(),
                (probs.argmax(1) == other).float().mean().item())
    confident, agreement = view(samples)
    confident_real, agreement_real = view(real)
    return _rounded({"classifier": "MLP 3072-512-512-10 on standardised pixels, 20 epochs, seed 7",
                     "classifier_heldout_accuracy": accuracy, "tolerance": tolerance, "samples": n,
                     "seed": FID_SEED, "heldout_confident": confident, "heldout_confident_real": confident_real,
                     "agreement": agreement, "agreement_real": agreement_real}, 4)


EVALUATIONS["vae_svhn"] = _evaluate_svhn_vae
EVALUATIONS["vae_svhn_flow"] = _evaluate_svhn_vae
EVALUATIONS["vae_svhn_unit"] = _evaluate_svhn_vae
for _name in ("vae_svhn", "vae_svhn_flow", "wgan_gp_svhn"):
    EVALUATIONS[f"{_name}:heldout"] = svhn_heldout_scores


# IFT6135 Problem 3 invites tuning the critic steps and learning rates. Kept: lambda 10 and 5 critic
# steps per generator step (Gulrajani et al.), Adam 2e-4 with betas (0.5, 0.9), batch 64. Changed
# from a 1,540-step run whose samples were coloured blotches (FID 352.9): the budget, 20,000
# generator steps; bf16 autocast; and samples from a weight average of the generator (ema 0.999),
# which the VAE does not need. An "epoch" is `passes` passes over the 7,000 training images, so
# that the 16 fixed codes are decoded (and the validation FID measured) 25 times, not 900, and the
# checkpoint (two generators, critic, snapshots) stays under 5 MB.
WGAN_GP_SVHN = dict(d_norm=None, n_critic=5, penalty=10.0, lr=2e-4, betas=(0.5, 0.9), batch_size=64,
                    passes=37, epochs=25, autocast="bf16", ema=0.999)
MONITOR_SAMPLES = 1000       # samples scored against the validation part after every epoch


def validation_fid_monitor(svhn, device=None, seed: int = FID_SEED):
    """A `fit_gan` monitor: model -> {"val_fid": FID of MONITOR_SAMPLES samples (seed `seed`)
    against SVHN's validation part}, on the SVHN classifier's features (the validation features
    computed once). The held-out part stays out of training decisions. Returns {} when there is
    no classifier, and under DGM_SMOKE=1 (its validation cut is too small for 128-d covariances)."""
    from ..metrics import draw_samples
    if not checkpoints.exists(SVHN_CLASSIFIER) or settings.smoke_mode():
        return lambda model: {}
    reference = FIDReference("svhn", device=device, images=svhn.val[0], what="SVHN validation part")
    return lambda model: {"val_fid": reference.score(draw_samples(model, MONITOR_SAMPLES,
                                                                  torch.Generator().manual_seed(seed)))}


@recipe("wgan_gp_svhn")
def _wgan_gp_svhn(device, resume) -> Trained:
    """IFT6135 Problem 3's GAN on SVHN: WGAN-GP (WGAN_GP_SVHN: lambda 10, 5 critic steps per
    generator step, Adam 2e-4 with betas (0.5, 0.9), batch 64, bf16 autocast) with vae_svhn's
    generator architecture (`nets.DCGANGenerator`, latent size 100, width 32) sampled through a
    weight average (ema 0.999), and a critic of two stride-2 convolutions without normalisation
    (`nets.DCGANDiscriminator`, norm None: the gradient penalty is per sample), trained through
    `divergences.fit_gan` / `wgan_gp_step` on the SVHN train part: 25 epochs of 37 passes
    (101,175 critic and 20,235 generator steps), keeping a decoding of 16 fixed codes and the
    validation FID (`validation_fid_monitor`) after every epoch.
    Metrics: the last epoch's mean critic estimate of W1, FID of 1,000 samples on the held-out part.
    Budget: about 0.067 s of one core per critic step under bf16 (15 steps/s), 4,047 steps an
    epoch, 4.5 min an epoch: about 1 h 55 min on one core."""
    s = WGAN_GP_SVHN
    svhn = load_svhn_data()
    x = svhn.train[0].repeat(s["passes"], 1, 1, 1)          # (passes * 7000, 3, 32, 32), each image once a pass
    model, history = fit_gan_recipe("wgan_gp_svhn", x, s, width=SVHN_WIDTH, device=device, resume=resume,
                                     latent_dim=SVHN_LATENT, monitor=validation_fid_monitor(svhn, device))
    last = history.epochs[-1]
    per_epoch = -(-len(x) // s["batch_size"]) if not settings.smoke_mode() else min(2, -(-len(x) // s["batch_size"]))
    metrics = {"epochs": len(history.epochs), "passes_per_epoch": s["passes"], "train_images": len(svhn.train[0]),
               "batch_size": s["batch_size"], "critic_steps": per_epoch * len(history.epochs),
               "last_epoch_wasserstein": last.get("train_wasserstein"),
               "last_epoch_penalty": last.get("train_penalty"), "last_epoch_val_fid": last.get("val_fid")}
    metrics["generator_steps"] = metrics["critic_steps"] // s["n_critic"]
    checkpoints.round_to_storage(model, "float16")           # the FID of the weights as stored
    metrics.update(svhn_sample_fid(model))
    return Trained(model, _rounded(metrics, 4), history.to_dict(), _svhn_data_mode(svhn), storage="float16")
# --- end of the SVHN section ------------------------------------------------------------------------
