"""The AEs and VAEs of notebooks 02 and 03 (binarised MNIST and stackedMNIST) and the flow-prior
VAE of notebook 08: recipes, metrics and stored evaluations."""
from __future__ import annotations

import functools

import torch

from .. import checkpoints, settings
from ..data import DataMode, MNISTData, split_validation
from ..models import VAE, AutoEncoder, model_loss
from ..training import EarlyStopping, fit
from .registry import (
    EVALUATIONS, RECIPES, Trained, _rounded, evaluation, load_verifier, recipe, smoke_count,
    value_summary,
)
from .classifiers import (
    ANOMALY_SEED, IMPORTANCE_SAMPLES, LIVE_IMAGES, LOG_PX_BATCH, PRIOR_MC_SAMPLES, SAMPLE_COUNTS,
    SAMPLE_SEED, TOP_K,
)


# --- auto-encoders and VAEs (notebooks 02 and 03) ------------------------------------------------

GENERATIVE = {  # architecture per channel count: mono, and the joint 3-channel variant
    1: {"latent_dim": 16, "width": 32},
    3: {"latent_dim": 48, "width": 64},
}
GENERATIVE_EPOCHS = {"ae": 15, "vae": 25}


def _ae_or_vae(kind: str, color: bool, missing: bool, device, resume, prior: dict | None = None) -> Trained:
    """An AE or VAE on binarised (stacked)MNIST, the last 5,000 training images for validation.
    prior: VAE keyword arguments {"prior": name, "prior_kwargs": {...}} replacing N(0, I); nothing
    else changes (the flow-prior VAE of notebook 08 differs from vae_mono by this alone)."""
    mode = DataMode.of(color=color, binary=True, missing=missing)
    x, y = MNISTData(mode).get_full_data_set(training=True)
    train_set, val_set = split_validation(x, y, n_val=5000)
    cls = AutoEncoder if kind == "ae" else VAE
    if prior and cls is not VAE:
        raise ValueError("only a VAE has a prior")
    model = cls(channels=mode.channels, **GENERATIVE[mode.channels], **(prior or {})).to(device)
    desc = f"{kind}_{mode.name.lower()}" + (f"_{prior['prior']}" if prior else "")
    history = fit(model, model_loss, train_set[:1], val_set[:1], epochs=GENERATIVE_EPOCHS[kind],
                  batch_size=128, lr=1e-3, early_stopping=EarlyStopping(patience=3),
                  scheduler=lambda opt, steps: torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps),
                  resume_path=resume, desc=desc)
    if kind == "ae":
        model.fit_code_distribution(train_set[0])
    return Trained(model.eval(), generative_metrics(model, mode), history.to_dict(), mode.name)


@torch.no_grad()
def generative_metrics(model, mode: DataMode, n_samples: int = 10_000) -> dict:
    """Reconstruction accuracy on the test set, predictability/coverage of samples, test ELBO."""
    from ..metrics import elbo, generation_quality, reconstruction_accuracy
    verifier = load_verifier()
    x, y = MNISTData(DataMode.of(color=mode.color, binary=True, missing=False)).get_full_data_set(training=False)
    metrics = {"reconstruction_accuracy": reconstruction_accuracy(model, verifier, x, y)}
    samples = model.sample(256 if settings.smoke_mode() else n_samples, generator=torch.Generator().manual_seed(0))
    quality = generation_quality(verifier, samples)
    metrics.update({f"sample_{k}": quality[k] for k in ("predictability", "coverage")})
    if isinstance(model, VAE):
        metrics["test_elbo"] = elbo(model, x, generator=torch.Generator().manual_seed(0)).mean().item()
    return _rounded(metrics, 4)


for _kind in ("ae", "vae"):
    for _color in (False, True):
        for _missing in (False, True):
            _name = f"{_kind}_{'color' if _color else 'mono'}{'_missing' if _missing else ''}"
            RECIPES[_name] = functools.partial(_ae_or_vae, _kind, _color, _missing)


# --- the flow-prior VAE (notebook 08: VU Assignment 4A) --------------------------------------------
# vae_mono with a RealNVP prior: the same data mode (MONO_BINARY_COMPLETE), split, encoder, decoder,
# latent size 16, width, optimiser, 25 epochs, cosine schedule and stopping; and, since the VAE
# builds its prior last, the same initial encoder and decoder weights, batches and noise draws.

FLOW_PRIOR = {"prior": "realnvp", "prior_kwargs": {"n_layers": 8, "hidden": 128}}


@recipe("vae_mono_flow")
def _vae_mono_flow(device, resume) -> Trained:
    """VU Assignment 4A: vae_mono with p(z) a RealNVP flow of 8 affine couplings (a fixed random
    permutation of the 16 coordinates before each; each coupling's scale and shift come from a
    two-hidden-layer MLP of width 128 on the kept half, its log-scale bounded by a learned tanh
    range), trained jointly with the encoder and decoder on the ELBO with the Monte-Carlo KL.
    Eight couplings rather than the sheet's three: every coordinate is transformed several times
    over, and the flow (about 0.2 M parameters) costs little beside the convolutions. Budget:
    vae_mono trained in 5 min on one core (25 epochs of about 9 s plus 75 s of metrics); timed
    batches of this recipe are 8 % slower, so about 5.5 min on one core."""
    return _ae_or_vae("vae", False, False, device, resume, prior=FLOW_PRIOR)



def _sample_summary(model, channels: int, **sample_kwargs) -> dict:
    """Predictability, coverage, modes and KL (both protocols) of SAMPLE_COUNTS[channels] samples."""
    from ..metrics import classify_in_chunks, draw_samples, generation_summary
    from ..verification import DEFAULT_TOLERANCE
    n = smoke_count(SAMPLE_COUNTS[channels])
    samples = draw_samples(model, n, torch.Generator().manual_seed(SAMPLE_SEED), progress=True, **sample_kwargs)
    result = classify_in_chunks(load_verifier(), samples, desc=f"classifying {n:,} samples")
    tol = DEFAULT_TOLERANCE[channels]
    # how the count-dependent numbers grow with the number of samples: the first m of the n
    firsts = {m: type(result)(result.digits[:m], result.digit_confidence[:m]) for m in (1000, 2560, 10_000, n) if m <= n}
    by_count = {str(m): {"coverage": r.coverage(tol), "modes": r.modes(), "kl": r.kl_to_uniform()} for m, r in firsts.items()}
    return {**generation_summary(result, tol), "seed": SAMPLE_SEED, "by_count": by_count,
            "sampler": f"model.sample in chunks of 2560 from torch.Generator().manual_seed({SAMPLE_SEED})"
                       + (f", {sample_kwargs}" if sample_kwargs else "")}


def _stacked_reconstruction_accuracy(model) -> dict:
    """IT3030's reconstruction accuracy on the stacked test set (tolerance 0.5), with its standard error."""
    from ..metrics import batched, proportion_se
    x, y = MNISTData(DataMode.COLOR_BINARY_COMPLETE).get_full_data_set(training=False)
    accuracy = load_verifier().classify(batched(model.reconstruct, x, 1000)).accuracy(y, 0.5)
    return {"accuracy": accuracy, "se": proportion_se(accuracy, len(x)), "n": len(x), "tolerance": 0.5,
            "data": "COLOR_BINARY_COMPLETE test set"}


@evaluation("ae_mono")
def _evaluate_ae_mono(model) -> dict:
    """Samples of the mono AE from its fitted Gaussian and from N(0, I); the channel-wise stacked AE
    (the mono weights on each channel): its samples and its reconstruction accuracy."""
    from ..models import ChannelWise
    return {"samples_fitted": _sample_summary(model, 1, prior="fitted"),
            "samples_standard": _sample_summary(model, 1, prior="standard"),
            "channelwise_samples": _sample_summary(ChannelWise(model), 3, prior="fitted"),
            "channelwise_reconstruction": _stacked_reconstruction_accuracy(ChannelWise(model))}


@evaluation("ae_color")
def _evaluate_ae_color(model) -> dict:
    """Samples of the joint 3-channel AE (fitted Gaussian) and its reconstruction accuracy."""
    return {"samples": _sample_summary(model, 3, prior="fitted"),
            "reconstruction": _stacked_reconstruction_accuracy(model)}


@evaluation("vae_mono")
def _evaluate_vae_mono(model) -> dict:
    """Prior samples of the mono VAE; the channel-wise stacked VAE's samples and reconstruction accuracy."""
    from ..models import ChannelWise
    return {"samples": _sample_summary(model, 1),
            "channelwise_samples": _sample_summary(ChannelWise(model), 3),
            "channelwise_reconstruction": _stacked_reconstruction_accuracy(ChannelWise(model))}


@evaluation("vae_color")
def _evaluate_vae_color(model) -> dict:
    """Prior samples of the joint 3-channel VAE and its reconstruction accuracy."""
    return {"samples": _sample_summary(model, 3), "reconstruction": _stacked_reconstruction_accuracy(model)}


# notebook 08 (VU Assignment 4A): the flow-prior VAE has vae_mono's evaluation (prior samples, the
# channel-wise stacked VAE's samples and reconstruction), and both VAEs have the part
# "prior_comparison" with the same settings: likelihoods and the stackedMNIST balance over seeds.
EVALUATIONS["vae_mono_flow"] = _evaluate_vae_mono

COMPARISON_K = 200            # importance samples per image (IFT6135's K), encoder as proposal
COMPARISON_IS_IMAGES = 2000   # the first 2,000 test images: about 2 min of one core per VAE
COMPARISON_SEED = 0           # every estimate draws from torch.Generator().manual_seed(COMPARISON_SEED)
COMPARISON_BATCH = 100        # images per importance-sampling draw (divides COMPARISON_LIVE)
COMPARISON_LIVE = 200         # the notebook recomputes log p(x) of the first 200 test images
BALANCE_SEEDS = (0, 1, 2)     # channel-wise stackedMNIST samples: seed 0 is the main evaluation's draw


def mono_binary_splits() -> dict[str, torch.Tensor]:
    """vae_mono's data: {"val": the last 5,000 binarised training images (its validation split),
    "test": the 10,000 binarised test images}, each (N, 1, 28, 28)."""
    mode = DataMode.MONO_BINARY_COMPLETE
    x, y = MNISTData(mode).get_full_data_set(training=True)
    _, val_set = split_validation(x, y, n_val=5000)
    return {"val": val_set[0], "test": MNISTData(mode).get_full_data_set(training=False)[0]}


def prior_comparison_values(model, data: dict[str, torch.Tensor], n_images: int = COMPARISON_IS_IMAGES,
                            progress: bool = False) -> dict[str, torch.Tensor]:
    """Per image, in nats: "val_elbo" (N_val,) and "test_elbo" (N_test,), one-sample ELBOs, and
    "test_log_px" (n_images,), the importance-sampled log p(x) (K = COMPARISON_K) of the first
    n_images test images; each drawn from its own torch.Generator().manual_seed(COMPARISON_SEED).
    The ELBO goes 2,000 images and log p(x) COMPARISON_BATCH images to a draw, so a recomputation
    of the first m images (m a multiple of that) gives exactly the stored values; and the test
    ELBO is the one the recipe's `generative_metrics` reports. data: `mono_binary_splits()`."""
    from ..metrics import elbo, importance_log_px
    gen = lambda: torch.Generator().manual_seed(COMPARISON_SEED)   # noqa: E731
    return {"val_elbo": elbo(model, data["val"], generator=gen()),
            "test_elbo": elbo(model, data["test"], generator=gen()),
            "test_log_px": importance_log_px(model, data["test"][:n_images], COMPARISON_K,
                                             batch_size=COMPARISON_BATCH, generator=gen(), progress=progress)}


def channelwise_balance(model, seed: int) -> dict:
    """The channel-wise stacked VAE's samples (SAMPLE_COUNTS[3] = 25,600, from
    torch.Generator().manual_seed(seed)) counted the VEEGAN / PacGAN way: every sample's argmax
    class of 1000; {"seed", "n", "modes", "kl"} (KL of the class histogram to uniform, nats)."""
    from ..metrics import classify_in_chunks, draw_samples
    from ..models import ChannelWise
    n = smoke_count(SAMPLE_COUNTS[3])
    samples = draw_samples(ChannelWise(model), n, torch.Generator().manual_seed(seed), progress=True)
    result = classify_in_chunks(load_verifier(), samples, desc=f"classifying {n:,} samples")
    return {"seed": seed, "n": n, "modes": result.modes(), "kl": round(result.kl_to_uniform(), 5)}


def _prior_comparison(model, partner: str | None = None) -> dict:
    """Validation and test ELBO and importance-sampled test log p(x) (`prior_comparison_values`:
    mean, standard error, spread, the mean over the first COMPARISON_LIVE images), and the
    channel-wise stackedMNIST modes and KL at BALANCE_SEEDS with their mean and spread. partner:
    another checkpoint scored on the same images with the same draws, stored as paired
    differences (this model minus the partner), whose standard errors are far smaller."""
    data = mono_binary_splits()
    n = smoke_count(COMPARISON_IS_IMAGES)
    live = min(COMPARISON_LIVE, n)
    values = prior_comparison_values(model, data, n, progress=True)
    out = {"k": COMPARISON_K, "seed": COMPARISON_SEED, "batch_size": COMPARISON_BATCH, "live_images": live,
           "images": {k: len(v) for k, v in values.items()},
           "data": "MONO_BINARY_COMPLETE: validation = the last 5,000 training images, test = the test set; "
                   f"log p(x) on the first {n} test images",
           **{k: value_summary(v, live) for k, v in values.items()}}
    runs = [channelwise_balance(model, seed) for seed in BALANCE_SEEDS]
    out["balance"] = {"by_seed": runs, "sampler": "ChannelWise(model).sample via metrics.draw_samples"}
    for key in ("modes", "kl"):
        v = torch.tensor([float(r[key]) for r in runs], dtype=torch.float64)
        out["balance"][key] = {"mean": round(v.mean().item(), 4), "sd": round(v.std().item(), 4)}
    if partner is not None:
        other = checkpoints.load(partner, model.device)
        theirs = prior_comparison_values(other, data, n, progress=True)
        out["paired"] = {"minus": partner, "minus_sha256": checkpoints.entry(partner)["sha256"],
                         **{k: value_summary(values[k] - theirs[k], live) for k in values}}
    return out


@evaluation("vae_mono", part="prior_comparison")
def _evaluate_vae_mono_prior_comparison(model) -> dict:
    """Notebook 08's numbers for the Gaussian-prior VAE (see `_prior_comparison`)."""
    return _prior_comparison(model)


@evaluation("vae_mono_flow", part="prior_comparison")
def _evaluate_vae_mono_flow_prior_comparison(model) -> dict:
    """Notebook 08's numbers for the flow-prior VAE, and its paired differences from vae_mono."""
    return _prior_comparison(model, partner="vae_mono")


def _log_px_scores(model, x: torch.Tensor, is_anomaly: torch.Tensor, channelwise: bool = False) -> dict:
    """ELBO, prior Monte-Carlo and importance-sampled log p(x) of every image x (N, C, 28, 28), each
    as an anomaly score -log p(x): mean log p(x) and its standard error, the mean over the first
    LIVE_IMAGES[C] images (what a notebook recomputes), ROC-AUC for `is_anomaly` (N,), the top-k.
    channelwise: score the mono `model` on each channel of stacked x and add the three channels."""
    from scipy.stats import spearmanr
    from ..metrics import anomaly_record, log_px_estimates
    n_prior, k = smoke_count(PRIOR_MC_SAMPLES), (4 if settings.smoke_mode() else IMPORTANCE_SAMPLES)
    values = log_px_estimates(model, x, n_prior, k, ANOMALY_SEED, channelwise=channelwise, progress=True,
                              batch_size=LOG_PX_BATCH)
    live = min(LIVE_IMAGES[x.shape[1]], len(x))
    out = {"images": len(x), "prior_samples": n_prior, "importance_samples": k, "seed": ANOMALY_SEED,
           "batch_size": LOG_PX_BATCH, "live_images": live}
    for name, v in values.items():
        record = anomaly_record(-v, is_anomaly, TOP_K)
        out[name] = {"mean_log_px": -record.pop("mean_score"), "mean_log_px_se": record.pop("mean_score_se"),
                     "sd_log_px": v.double().std().item(), "live_mean_log_px": v[:live].double().mean().item(),
                     **record}
    out["spearman_prior_mc_vs_importance"] = float(spearmanr(values["prior_mc"].numpy(), values["importance"].numpy()).statistic)
    out["top_k_shared_prior_mc_vs_importance"] = len(set(out["prior_mc"]["top_k"]) & set(out["importance"]["top_k"]))
    return out


@evaluation("vae_mono_missing")
def _evaluate_vae_mono_missing(model) -> dict:
    """IT3030 VAE-ANOM: log p(x) of every mono test image (ELBO, prior Monte Carlo with N = 10,000,
    importance sampling with K = 16) as anomaly scores for the digit 8; and the same for the
    channel-wise stacked VAE on the stacked test set (VAE-STACK), channel scores added."""
    from ..data import MISSING_DIGIT, contains_digit
    x, y = MNISTData(DataMode.MONO_BINARY_COMPLETE).get_full_data_set(training=False)
    xs, ys = MNISTData(DataMode.COLOR_BINARY_COMPLETE).get_full_data_set(training=False)
    return {"mono": _log_px_scores(model, x, y == MISSING_DIGIT),
            "channelwise_stacked": _log_px_scores(model, xs, contains_digit(ys, MISSING_DIGIT, color=True),
                                                  channelwise=True)}


@evaluation("vae_color_missing")
def _evaluate_vae_color_missing(model) -> dict:
    """IT3030 VAE-STACK anomalies: log p(x) of every stacked test image under the joint VAE trained
    without 8s (ELBO, prior Monte Carlo, importance sampling) as anomaly scores."""
    from ..data import MISSING_DIGIT, contains_digit
    xs, ys = MNISTData(DataMode.COLOR_BINARY_COMPLETE).get_full_data_set(training=False)
    return {"stacked": _log_px_scores(model, xs, contains_digit(ys, MISSING_DIGIT, color=True))}


def _reconstruction_scores(model, x: torch.Tensor, is_anomaly: torch.Tensor) -> dict:
    """An AE's reconstruction loss of every image x (N, C, 28, 28) as anomaly score (deterministic)."""
    from ..metrics import anomaly_record, batched
    return {**anomaly_record(batched(model.reconstruction_loss, x, 1000), is_anomaly, TOP_K), "score": "reconstruction loss (nats)"}


@evaluation("ae_mono_missing")
def _evaluate_ae_mono_missing(model) -> dict:
    """IT3030 AE-ANOM: reconstruction loss of every mono test image as anomaly score for the digit 8;
    and of every stacked test image for the channel-wise wrapper (channel losses added), AE-STACK."""
    from ..data import MISSING_DIGIT, contains_digit
    from ..models import ChannelWise
    x, y = MNISTData(DataMode.MONO_BINARY_COMPLETE).get_full_data_set(training=False)
    xs, ys = MNISTData(DataMode.COLOR_BINARY_COMPLETE).get_full_data_set(training=False)
    return {"mono": _reconstruction_scores(model, x, y == MISSING_DIGIT),
            "channelwise_stacked": _reconstruction_scores(ChannelWise(model), xs, contains_digit(ys, MISSING_DIGIT, color=True))}


@evaluation("ae_color_missing")
def _evaluate_ae_color_missing(model) -> dict:
    """IT3030 AE-STACK anomalies: reconstruction loss of every stacked test image under the joint AE
    trained without 8s."""
    from ..data import MISSING_DIGIT, contains_digit
    xs, ys = MNISTData(DataMode.COLOR_BINARY_COMPLETE).get_full_data_set(training=False)
    return {"stacked": _reconstruction_scores(model, xs, contains_digit(ys, MISSING_DIGIT, color=True))}

