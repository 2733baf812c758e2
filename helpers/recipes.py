"""How each shipped checkpoint is trained: data, architecture, hyper-parameters, metrics.

`train(name)` runs one recipe through `training.fit`, measures its metrics and saves it
with `checkpoints.save`; `load_or_train(name, retrain)` is what a notebook calls;
`load_verifier()` gives the verification classifier on its shipped weights.
`python -m helpers train NAME` calls `train`. Training resumes from
`checkpoints/.resume/NAME.pt` after an interruption.
"""
from __future__ import annotations

import functools
import time
from typing import Callable, NamedTuple

import torch
from torch import nn

from . import checkpoints, settings
from .data import DataMode, MNISTData, binarized_mnist, split_validation
from .models import VAE, AutoEncoder, model_loss
from .nets import DigitClassifier
from .training import EarlyStopping, fit
from .training import evaluate as evaluate_loss
from .verification import Verifier, augment_for_verification, classification_loss

VERIFIER = "verification_net"


class Trained(NamedTuple):
    model: nn.Module
    metrics: dict
    history: dict
    data_mode: str


RECIPES: dict[str, Callable[[torch.device, "object"], Trained]] = {}


def recipe(name: str):
    def add(fn):
        RECIPES[name] = fn
        return fn
    return add


def resume_path(name: str):
    return settings.checkpoint_dir() / ".resume" / f"{name}.pt"


def train(name: str, device: torch.device | str | None = None) -> nn.Module:
    """Train checkpoint `name` from its recipe and save it (not under DGM_SMOKE=1). Returns the model."""
    if name not in RECIPES:
        raise ValueError(f"no recipe named {name!r}; known: {sorted(RECIPES)}")
    device = torch.device(device) if device is not None else settings.device()
    start = time.perf_counter()
    with settings.forked_rng(0):  # model initialisation is seeded; the caller's RNG is left alone
        # a smoke run must never leave state that a real run would resume from
        result = RECIPES[name](device, None if settings.smoke_mode() else resume_path(name))
    seconds = round(time.perf_counter() - start, 1)
    if not settings.smoke_mode():
        checkpoints.save(name, result.model, metrics=result.metrics, data_mode=result.data_mode,
                         history=result.history, trained_seconds=seconds,
                         command=f"python -m helpers train {name}")
    return result.model.eval()


def load_or_train(name: str, retrain: bool = False, device: torch.device | str | None = None) -> nn.Module:
    """Load checkpoint `name`, or train it from its recipe (and save it) when `retrain` is true or
    it does not exist yet. Under `DGM_SMOKE=1` retraining is a couple of batches and is not saved
    over the shipped weights."""
    if not retrain and checkpoints.exists(name):
        return checkpoints.load(name, device)
    return train(name, device=device)


EVALUATIONS: dict[str, Callable[[nn.Module], dict]] = {}


def evaluation(name: str, part: str | None = None):
    """Register the heavy evaluation of checkpoint `name` (run once by `evaluate`). A checkpoint
    can have further named evaluations: `part="x"` registers "name:x", stored beside the main one
    (`checkpoints.record_evaluation(name, ..., part="x")`) without touching it."""
    if part is not None and (not part or ":" in part):
        raise ValueError(f"an evaluation part must be a non-empty name without ':', got {part!r}")
    key = name if part is None else f"{name}:{part}"
    def add(fn):
        EVALUATIONS[key] = fn
        return fn
    return add


def evaluate(name: str, device: torch.device | str | None = None) -> dict:
    """Run the registered heavy evaluation `name` ("checkpoint" or "checkpoint:part") on the
    checkpoint's shipped weights and store the numbers with their settings in the manifest
    (`checkpoints.record_evaluation`; a part beside the main evaluation); under `DGM_SMOKE=1` it
    runs on the small subsets and stores nothing. Returns the numbers."""
    if name not in EVALUATIONS:
        raise ValueError(f"no evaluation for {name!r}; known: {sorted(EVALUATIONS)}")
    checkpoint, _, part = name.partition(":")
    model = checkpoints.load(checkpoint, device)
    start = time.perf_counter()
    result = EVALUATIONS[name](model)
    result.update(seconds=round(time.perf_counter() - start, 1), command=f"python -m helpers evaluate {name}",
                  sha256=checkpoints.entry(checkpoint)["sha256"])
    if not settings.smoke_mode():
        checkpoints.record_evaluation(checkpoint, result, part=part or None)
    return result


def load_verifier(device: torch.device | str | None = None) -> Verifier:
    """The verifier on the shipped `verification_net` checkpoint."""
    return Verifier(checkpoints.load(VERIFIER, device=device))


def _rounded(metrics: dict, digits: int) -> dict:
    """Round the numbers of a metrics dict; leave None and other values as they are."""
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in metrics.items()}


def one_cycle(max_lr: float):
    """A scheduler factory for `fit`: one-cycle learning rate over all training steps."""
    return lambda opt, total_steps: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total_steps)


@recipe("verification_net")
def _verification_net(device, resume) -> Trained:
    mode = DataMode.MONO_FLOAT_COMPLETE
    x, y = MNISTData(mode).get_full_data_set(training=True)
    train_set, val_set = split_validation(x, y, n_val=5000)
    model = DigitClassifier(width=32).to(device)
    history = fit(model, classification_loss, train_set, val_set, epochs=8, batch_size=128,
                  optimizer=torch.optim.AdamW(model.parameters(), weight_decay=1e-4),
                  scheduler=one_cycle(3e-3), augment=augment_for_verification, early_stopping=EarlyStopping(patience=3),
                  resume_path=resume, desc="verification_net")
    return Trained(model, verification_metrics(Verifier(model)), history.to_dict(), mode.name)


def verification_metrics(verifier: Verifier) -> dict:
    """Test accuracy on mono MNIST and all-three-right accuracy on stacked test images."""
    x, y = MNISTData(DataMode.MONO_FLOAT_COMPLETE).get_full_data_set(training=False)
    xs, ys = MNISTData(DataMode.COLOR_FLOAT_COMPLETE).get_full_data_set(training=False)
    mono = (verifier.classify(x).labels == y).float().mean().item()
    stacked = (verifier.classify(xs).labels == ys).float().mean().item()
    return {"mnist_test_accuracy": round(mono, 5), "stacked_test_accuracy": round(stacked, 5)}


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
    from .metrics import elbo, generation_quality, reconstruction_accuracy
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


# --- decoder likelihoods on grey MNIST (notebook 04) ----------------------------------------------

LIKELIHOOD_VAES = {
    "vae_gaussian": ("gaussian", {"min_variance": 1e-3}),
    "vae_beta": ("beta", {"epsilon": 1e-3}),
    "vae_categorical": ("categorical", {"bins": 16}),
    "vae_bernoulli_grey": ("bernoulli", {}),
}


LIKELIHOOD_EPOCH_CAP = 60   # an upper bound only: the stopping criterion ends every run before it


def likelihood_stopping() -> EarlyStopping:
    """The stopping criterion of notebooks 04 and 07: stop when the validation -ELBO has not
    improved by 0.1 nats for 3 epochs; the best epoch's weights are kept."""
    return EarlyStopping(patience=3, min_delta=0.1)


def _likelihood_vae(likelihood: str, kwargs: dict, device, resume) -> Trained:
    mode = DataMode.MONO_FLOAT_COMPLETE
    x, y = MNISTData(mode).get_full_data_set(training=True)
    train_set, val_set = split_validation(x, y, n_val=10_000)   # first 50,000 / last 10,000
    model = VAE(channels=1, latent_dim=16, width=32, likelihood=likelihood, likelihood_kwargs=kwargs).to(device)
    def whole_training_set(m):   # 2AMU20 Task 1b: the ELBO over all 50,000 training images, per epoch
        return {"train_set_loss": evaluate_loss(m, model_loss, train_set[:1])["loss"]}
    history = fit(model, model_loss, train_set[:1], val_set[:1], epochs=LIKELIHOOD_EPOCH_CAP, batch_size=128,
                  lr=1e-3, early_stopping=likelihood_stopping(), validate=whole_training_set, resume_path=resume,
                  desc=f"vae_{likelihood}")
    from .metrics import elbo
    x_test, _ = MNISTData(mode).get_full_data_set(training=False)
    g = torch.Generator().manual_seed(0)
    metrics = {"val_elbo": elbo(model, val_set[0], generator=g).mean().item(),
               "test_elbo": elbo(model, x_test, generator=g).mean().item(),
               "epochs": len(history.epochs), "best_epoch": history.best_epoch}
    return Trained(model, _rounded(metrics, 3), history.to_dict(), mode.name)


for _name, (_lik, _kwargs) in LIKELIHOOD_VAES.items():
    RECIPES[_name] = functools.partial(_likelihood_vae, _lik, _kwargs)



# --- 2-D codes on grey MNIST (notebook 05: CIL Series 9 Problem 2, 2AMU20 Task 3a) ----------------

def _two_dimensional(kind: str, device, resume) -> Trained:
    """CIL Series 9 Problem 2: an AE (Q1) or a VAE (Q5) with a 2-D code, the binary log-likelihood
    loss (cross-entropy summed over pixels, averaged over the batch) on grey MNIST, Adam, minibatch
    256. The same data, split and stopping criterion as notebook 04's decoder VAEs, so the 2-D VAE
    and vae_bernoulli_grey (K = 16) are one model-data combination (2AMU20 Task 3a and 3b)."""
    mode = DataMode.MONO_FLOAT_COMPLETE
    x, y = MNISTData(mode).get_full_data_set(training=True)
    train_set, val_set = split_validation(x, y, n_val=10_000)   # first 50,000 / last 10,000
    model = (AutoEncoder(channels=1, latent_dim=2, width=32) if kind == "ae"
             else VAE(channels=1, latent_dim=2, width=32, likelihood="bernoulli")).to(device)
    history = fit(model, model_loss, train_set[:1], val_set[:1], epochs=LIKELIHOOD_EPOCH_CAP, batch_size=256,
                  lr=1e-3, early_stopping=likelihood_stopping(), resume_path=resume, desc=f"{kind}_2d")
    x_test, _ = MNISTData(mode).get_full_data_set(training=False)
    metrics = {"epochs": len(history.epochs), "best_epoch": history.best_epoch}
    if kind == "ae":
        model.fit_code_distribution(train_set[0])
        metrics.update({f"{split}_reconstruction_loss": evaluate_loss(model, model_loss, (data,))["loss"]
                        for split, data in (("val", val_set[0]), ("test", x_test))})
    else:
        from .metrics import elbo
        g = torch.Generator().manual_seed(0)
        metrics.update({"val_elbo": elbo(model, val_set[0], generator=g).mean().item(),
                        "test_elbo": elbo(model, x_test, generator=g).mean().item()})
    return Trained(model.eval(), _rounded(metrics, 3), history.to_dict(), mode.name)


for _kind in ("ae", "vae"):
    RECIPES[f"{_kind}_2d"] = functools.partial(_two_dimensional, _kind)

# --- the z = 100 VAE on binarised MNIST (notebook 07) ---------------------------------------------

BINARIZATION_SEED = 0


@recipe("vae_z100")
def _vae_z100(device, resume) -> Trained:
    data = binarized_mnist(seed=BINARIZATION_SEED)
    model = VAE(channels=1, latent_dim=100, width=32, arch="pooled").to(device)
    history = fit(model, model_loss, (data["train"],), (data["val"],), epochs=150, batch_size=128, lr=1e-3,
                  early_stopping=likelihood_stopping(), resume_path=resume, desc="vae_z100")
    from .metrics import elbo
    g = torch.Generator().manual_seed(0)
    metrics = {"val_elbo": elbo(model, data["val"], generator=g).mean().item(),
               "test_elbo": elbo(model, data["test"], generator=g).mean().item(),
               "epochs": len(history.epochs), "best_epoch": history.best_epoch}
    return Trained(model, _rounded(metrics, 3), history.to_dict(),
                   f"binarized MNIST (stochastic, seed {BINARIZATION_SEED})")


Z100_K, Z100_SEED = 200, 0


@evaluation("vae_z100")
def _evaluate_vae_z100(model) -> dict:
    """ELBO and the K = 200 importance-sampled log p(x) of every validation and test image
    (IFT6135 Problem 2): means and their standard errors over images, in nats."""
    from .metrics import elbo, importance_log_px
    data = binarized_mnist(seed=BINARIZATION_SEED)
    out = {"k": Z100_K, "seed": Z100_SEED}
    for split in ("val", "test"):
        x = data[split]
        g = torch.Generator().manual_seed(Z100_SEED)
        values = {"elbo": elbo(model, x, generator=g),
                  "log_px": importance_log_px(model, x, Z100_K, generator=g, progress=True)}
        for key, v in values.items():
            out[f"{split}_{key}"] = round(v.mean().item(), 3)
            out[f"{split}_{key}_se"] = round((v.std() / len(v) ** 0.5).item(), 4)
        out[f"{split}_images"] = len(x)
    return out


# --- encoder-free inference with vae_z100 (notebook 06: 2AMU20 Task 4) -----------------------------
# `python -m helpers evaluate vae_z100:encoder_free` stores, beside the K = 200 evaluation above, the
# amortisation gap and the completion accuracies on the first EF_IMAGES binarised test images. The
# images are fitted EF_CHUNK at a time (chunk c with seed EF_SEED + c), so the notebook's live subset,
# the first chunk, goes through exactly the computation the stored figures come from.

EF_IMAGES, EF_CHUNK, EF_SEED = 1000, 100, 0
EF_DRAWS = 20                 # one-sample ELBO draws averaged per image (the same expectation, less noise)
EF_K = 200                    # importance samples of log p(x), as notebook 07
EF_LIVE = 100                 # the notebook recomputes the first EF_LIVE images (a multiple of EF_CHUNK)
EF_RANDOM_FRACTION = 0.5      # the random mask observes each pixel with this probability: half, like the halves


def _chunks(n: int, chunk: int, desc: str, progress: bool):
    from tqdm.auto import tqdm
    return tqdm(range(0, n, chunk), desc=desc, leave=False, disable=not progress)


def encoder_free_gap(model, x: torch.Tensor, seed: int = EF_SEED, chunk: int = EF_CHUNK,
                     progress: bool = False, refine: bool = False, keep: list | None = None) -> dict[str, torch.Tensor]:
    """Per image of x (N, 1, 28, 28), each (N,) in nats: "encoder_free_elbo" (q(z | Psi) fitted by
    `inference.fit_posteriors` from the prior, chunk images at a time), "encoder_elbo" (q(z | x) of
    the encoder), each the mean of EF_DRAWS one-sample ELBOs; "log_px" (importance sampling, K =
    EF_K, the encoder as proposal, as notebook 07) and "log_px_fitted" (the same with the fitted q as
    proposal); "steps" (the fitting steps of the image's chunk); with `refine`, also
    "refined_elbo": the same fit started from the encoder's q(z | x) instead of the prior.
    keep: a list that receives (fitted PerImagePosterior, its fit History) of every chunk."""
    from . import inference
    from .metrics import elbo, importance_log_likelihood, importance_log_px
    from .models import reparameterize
    parts = []
    for c, start in enumerate(_chunks(len(x), chunk, "encoder-free ELBO and log p(x)", progress)):
        xc = x[start:start + chunk]
        posterior, history = inference.fit_posteriors(model, xc, seed=seed + c, progress=progress and c == 0)
        if keep is not None:
            keep.append((posterior, history))
        g = torch.Generator().manual_seed(seed + c)
        free = inference.encoder_free_elbo(posterior, g, draws=EF_DRAWS)
        enc = torch.stack([elbo(model, xc, generator=g) for _ in range(EF_DRAWS)]).mean(0)
        log_px = importance_log_px(model, xc, EF_K, generator=g)
        with torch.no_grad():
            z = reparameterize(posterior.mean, posterior.logvar, g, EF_K)
            fitted = importance_log_likelihood(model, xc.flatten(1), z, proposal=(posterior.mean, posterior.logvar)).cpu()
        parts.append({"encoder_free_elbo": free, "encoder_elbo": enc, "log_px": log_px, "log_px_fitted": fitted,
                      "steps": torch.full((len(xc),), float(posterior.fit_info["steps"]))})
        if refine:
            refined, _ = inference.fit_posteriors(model, xc, seed=seed + c, init="encoder", progress=False)
            parts[-1]["refined_elbo"] = inference.encoder_free_elbo(refined, g, draws=EF_DRAWS)
            parts[-1]["refined_steps"] = torch.full((len(xc),), float(refined.fit_info["steps"]))
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


COMPLETION_METHODS = ("encoder_free", "encoder_half", "black", "training_mean")


def completion_scores(model, verifier, x: torch.Tensor, labels: torch.Tensor, kind: str,
                      fill: torch.Tensor, seed: int = EF_SEED, chunk: int = EF_CHUNK,
                      progress: bool = False, keep: list | None = None) -> dict[str, torch.Tensor]:
    """Complete the images x (N, 1, 28, 28) observed through mask `kind` (`inference.make_mask`,
    random pixels with probability EF_RANDOM_FRACTION) and ask `verifier` whether each completion
    still shows its digit `labels` (N,) (argmax class). Per image, bool (N,) for each of
    COMPLETION_METHODS: "encoder_free" (q(z | Psi) fitted to the observed pixels, one completion
    x' ~ p(x | z), z ~ q), "encoder_half" (the encoder fed the masked image), "black" (missing pixels
    0) and "training_mean" (missing pixels from `fill` (1, 1, 28, 28), the training mean image);
    and "steps" (N,) of the fit. Chunk c uses seed + c for its mask, fit and draws. keep: a list
    that receives the completed images {method: (n, 1, 28, 28)} and the fitted PerImagePosterior of
    every chunk, as (images, posterior)."""
    from . import inference
    parts = []
    for c, start in enumerate(_chunks(len(x), chunk, f"completing ({kind} observed)", progress)):
        xc, yc = x[start:start + chunk], labels[start:start + chunk]
        g = torch.Generator().manual_seed(seed + c)
        mask = inference.make_mask(kind, len(xc), fraction=EF_RANDOM_FRACTION, generator=g)
        posterior, _ = inference.fit_posteriors(model, xc, mask, seed=seed + c, progress=progress and c == 0)
        images = {"encoder_free": inference.complete(posterior, 1, g),
                  "encoder_half": inference.encoder_completion(model, xc, mask, g),
                  "black": inference.fill_missing(xc, mask, 0.0),
                  "training_mean": inference.fill_missing(xc, mask, fill)}
        if keep is not None:
            keep.append((images, posterior))
        part = {k: verifier.classify(v).labels == yc for k, v in images.items()}
        part["steps"] = torch.full((len(xc),), float(posterior.fit_info["steps"]))
        parts.append(part)
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _summary(values: torch.Tensor, live: int) -> dict:
    """Mean, its standard error, the spread over images and the mean of the first `live` values."""
    v = values.double()
    return {"mean": round(v.mean().item(), 4), "se": round((v.std() / len(v) ** 0.5).item(), 4),
            "sd": round(v.std().item(), 4), "live_mean": round(v[:live].mean().item(), 4)}


@evaluation("vae_z100", part="encoder_free")
def _evaluate_vae_z100_encoder_free(model) -> dict:
    """2AMU20 Task 4 on the first EF_IMAGES binarised test images: the encoder-free and the
    encoder's ELBO against log p(x) (the amortisation and approximation gaps), and for every mask of
    `inference.MASKS` how often the verifier sees the original digit in the completions and in the
    baselines. Each figure with its standard error and the mean over the first EF_LIVE images."""
    from . import inference
    data = binarized_mnist(seed=BINARIZATION_SEED)
    n = _count(EF_IMAGES)
    x = data["test"][:n]
    labels = MNISTData(DataMode.MONO_FLOAT_COMPLETE).get_full_data_set(training=False)[1][:n]
    live = min(EF_LIVE, n)
    out = {"images": n, "chunk": EF_CHUNK, "seed": EF_SEED, "draws": EF_DRAWS, "k": EF_K, "live_images": live,
           "data": f"the first {n} test images of binarized_mnist(seed={BINARIZATION_SEED})",
           "fit": {"lr": inference.LR, "window": inference.WINDOW, "rel_tol": inference.REL_TOL,
                   "drop": inference.DROP, "drops": inference.DROPS, "max_steps": inference.MAX_STEPS,
                   "init": "prior"}}
    start = time.perf_counter()
    gap = encoder_free_gap(model, x, progress=True, refine=True)
    out["gap_seconds"] = round(time.perf_counter() - start, 1)
    out["gap"] = {k: _summary(v, live) for k, v in gap.items()}
    out["gap"]["amortisation"] = _summary(gap["encoder_free_elbo"] - gap["encoder_elbo"], live)
    out["gap"]["approximation"] = _summary(gap["log_px"] - gap["encoder_free_elbo"], live)
    out["gap"]["approximation_fitted"] = _summary(gap["log_px_fitted"] - gap["encoder_free_elbo"], live)
    out["gap"]["refined_minus_free"] = _summary(gap["refined_elbo"] - gap["encoder_free_elbo"], live)
    out["gap"]["free_at_least_encoder"] = round((gap["encoder_free_elbo"] >= gap["encoder_elbo"]).double().mean().item(), 4)

    verifier = load_verifier()
    fill = data["train"].mean(0, keepdim=True)
    original = (verifier.classify(x).labels == labels).double()
    out["completion"] = {"original": _summary(original, live), "random_fraction": EF_RANDOM_FRACTION,
                         "tolerance": "argmax class"}
    for kind in inference.MASKS:
        start = time.perf_counter()
        scores = completion_scores(model, verifier, x, labels, kind, fill, progress=True)
        out["completion"][kind] = {k: _summary(v.double(), live) for k, v in scores.items()}
        out["completion"][kind]["seconds"] = round(time.perf_counter() - start, 1)
    return out


# --- evaluations of notebooks 02 and 03 ---
# The heavy numbers of notebooks 02 and 03, run once with `python -m helpers evaluate NAME` and
# stored with their settings; the notebooks print them and recompute a live subset that must agree
# within its Monte-Carlo error. `verification_net` stores the real-data ceiling rows of their tables.

SAMPLE_COUNTS = {1: 10_000, 3: 25_600}   # generated images per generator: mono, stacked (the mode-count protocol)
SAMPLE_SEED = 0                          # torch.Generator seed of the stored samples; the notebooks' live draws use 1
REAL_STACKED_SEED = 1                    # the 25,600 real stacked test images (MNISTData seed), as in notebook 01
ANOMALY_SEED = 0                         # generator of the prior samples, posterior samples and ELBO draws
PRIOR_MC_SAMPLES = 10_000                # N of IT3030's prior Monte-Carlo log p(x)
IMPORTANCE_SAMPLES = 16                  # K of the importance-sampled log p(x)
TOP_K = 16                               # anomalies kept for the figures
LIVE_IMAGES = {1: 1000, 3: 300}          # notebooks recompute log p(x) of the first LIVE_IMAGES[channels] test images
LOG_PX_BATCH = 100                       # images per draw of the ELBO and importance estimates (divides LIVE_IMAGES)


def _count(n: int) -> int:
    """A stored evaluation's size, or a small one under DGM_SMOKE=1."""
    return min(n, 256) if settings.smoke_mode() else n


def _sample_summary(model, channels: int, **sample_kwargs) -> dict:
    """Predictability, coverage, modes and KL (both protocols) of SAMPLE_COUNTS[channels] samples."""
    from .metrics import classify_in_chunks, draw_samples, generation_summary
    from .verification import DEFAULT_TOLERANCE
    n = _count(SAMPLE_COUNTS[channels])
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
    from .metrics import batched, proportion_se
    x, y = MNISTData(DataMode.COLOR_BINARY_COMPLETE).get_full_data_set(training=False)
    accuracy = load_verifier().classify(batched(model.reconstruct, x, 1000)).accuracy(y, 0.5)
    return {"accuracy": accuracy, "se": proportion_se(accuracy, len(x)), "n": len(x), "tolerance": 0.5,
            "data": "COLOR_BINARY_COMPLETE test set"}


@evaluation("verification_net")
def _evaluate_verification_net(net) -> dict:
    """The real-data ceiling rows: the binarised mono test set (tolerance 0.8) and 25,600 binarised
    stacked test images (tolerance 0.5), scored like the generators' samples."""
    from .metrics import classify_in_chunks, generation_summary
    verifier = Verifier(net)
    x, y = MNISTData(DataMode.MONO_BINARY_COMPLETE).get_full_data_set(training=False)
    xs, ys = MNISTData(DataMode.COLOR_BINARY_COMPLETE, n_test=_count(SAMPLE_COUNTS[3]),
                       seed=REAL_STACKED_SEED).get_full_data_set(training=False)
    mono, stacked = classify_in_chunks(verifier, x), classify_in_chunks(verifier, xs)
    return {"real_mono": {**generation_summary(mono, 0.8), "accuracy": mono.accuracy(y, 0.8),
                          "data": "MNIST test set, binarised (MONO_BINARY_COMPLETE)"},
            "real_stacked": {**generation_summary(stacked, 0.5), "accuracy": stacked.accuracy(ys, 0.5),
                             "data": f"MNISTData(COLOR_BINARY_COMPLETE, n_test={len(xs)}, seed={REAL_STACKED_SEED}) test images"}}


@evaluation("ae_mono")
def _evaluate_ae_mono(model) -> dict:
    """Samples of the mono AE from its fitted Gaussian and from N(0, I); the channel-wise stacked AE
    (the mono weights on each channel): its samples and its reconstruction accuracy."""
    from .models import ChannelWise
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
    from .models import ChannelWise
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
    from .metrics import elbo, importance_log_px
    gen = lambda: torch.Generator().manual_seed(COMPARISON_SEED)   # noqa: E731
    return {"val_elbo": elbo(model, data["val"], generator=gen()),
            "test_elbo": elbo(model, data["test"], generator=gen()),
            "test_log_px": importance_log_px(model, data["test"][:n_images], COMPARISON_K,
                                             batch_size=COMPARISON_BATCH, generator=gen(), progress=progress)}


def channelwise_balance(model, seed: int) -> dict:
    """The channel-wise stacked VAE's samples (SAMPLE_COUNTS[3] = 25,600, from
    torch.Generator().manual_seed(seed)) counted the VEEGAN / PacGAN way: every sample's argmax
    class of 1000; {"seed", "n", "modes", "kl"} (KL of the class histogram to uniform, nats)."""
    from .metrics import classify_in_chunks, draw_samples
    from .models import ChannelWise
    n = _count(SAMPLE_COUNTS[3])
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
    n = _count(COMPARISON_IS_IMAGES)
    live = min(COMPARISON_LIVE, n)
    values = prior_comparison_values(model, data, n, progress=True)
    out = {"k": COMPARISON_K, "seed": COMPARISON_SEED, "batch_size": COMPARISON_BATCH, "live_images": live,
           "images": {k: len(v) for k, v in values.items()},
           "data": "MONO_BINARY_COMPLETE: validation = the last 5,000 training images, test = the test set; "
                   f"log p(x) on the first {n} test images",
           **{k: _summary(v, live) for k, v in values.items()}}
    runs = [channelwise_balance(model, seed) for seed in BALANCE_SEEDS]
    out["balance"] = {"by_seed": runs, "sampler": "ChannelWise(model).sample via metrics.draw_samples"}
    for key in ("modes", "kl"):
        v = torch.tensor([float(r[key]) for r in runs], dtype=torch.float64)
        out["balance"][key] = {"mean": round(v.mean().item(), 4), "sd": round(v.std().item(), 4)}
    if partner is not None:
        other = checkpoints.load(partner, model.device)
        theirs = prior_comparison_values(other, data, n, progress=True)
        out["paired"] = {"minus": partner, "minus_sha256": checkpoints.entry(partner)["sha256"],
                         **{k: _summary(values[k] - theirs[k], live) for k in values}}
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
    from .metrics import anomaly_record, log_px_estimates
    n_prior, k = _count(PRIOR_MC_SAMPLES), (4 if settings.smoke_mode() else IMPORTANCE_SAMPLES)
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
    from .data import MISSING_DIGIT, contains_digit
    x, y = MNISTData(DataMode.MONO_BINARY_COMPLETE).get_full_data_set(training=False)
    xs, ys = MNISTData(DataMode.COLOR_BINARY_COMPLETE).get_full_data_set(training=False)
    return {"mono": _log_px_scores(model, x, y == MISSING_DIGIT),
            "channelwise_stacked": _log_px_scores(model, xs, contains_digit(ys, MISSING_DIGIT, color=True),
                                                  channelwise=True)}


@evaluation("vae_color_missing")
def _evaluate_vae_color_missing(model) -> dict:
    """IT3030 VAE-STACK anomalies: log p(x) of every stacked test image under the joint VAE trained
    without 8s (ELBO, prior Monte Carlo, importance sampling) as anomaly scores."""
    from .data import MISSING_DIGIT, contains_digit
    xs, ys = MNISTData(DataMode.COLOR_BINARY_COMPLETE).get_full_data_set(training=False)
    return {"stacked": _log_px_scores(model, xs, contains_digit(ys, MISSING_DIGIT, color=True))}


def _reconstruction_scores(model, x: torch.Tensor, is_anomaly: torch.Tensor) -> dict:
    """An AE's reconstruction loss of every image x (N, C, 28, 28) as anomaly score (deterministic)."""
    from .metrics import anomaly_record, batched
    return {**anomaly_record(batched(model.reconstruction_loss, x, 1000), is_anomaly, TOP_K), "score": "reconstruction loss (nats)"}


@evaluation("ae_mono_missing")
def _evaluate_ae_mono_missing(model) -> dict:
    """IT3030 AE-ANOM: reconstruction loss of every mono test image as anomaly score for the digit 8;
    and of every stacked test image for the channel-wise wrapper (channel losses added), AE-STACK."""
    from .data import MISSING_DIGIT, contains_digit
    from .models import ChannelWise
    x, y = MNISTData(DataMode.MONO_BINARY_COMPLETE).get_full_data_set(training=False)
    xs, ys = MNISTData(DataMode.COLOR_BINARY_COMPLETE).get_full_data_set(training=False)
    return {"mono": _reconstruction_scores(model, x, y == MISSING_DIGIT),
            "channelwise_stacked": _reconstruction_scores(ChannelWise(model), xs, contains_digit(ys, MISSING_DIGIT, color=True))}


@evaluation("ae_color_missing")
def _evaluate_ae_color_missing(model) -> dict:
    """IT3030 AE-STACK anomalies: reconstruction loss of every stacked test image under the joint AE
    trained without 8s."""
    from .data import MISSING_DIGIT, contains_digit
    xs, ys = MNISTData(DataMode.COLOR_BINARY_COMPLETE).get_full_data_set(training=False)
    return {"stacked": _reconstruction_scores(model, xs, contains_digit(ys, MISSING_DIGIT, color=True))}


# ==================================================================================================
# --- GANs (notebooks 09 and 10, issue 10): DCGAN, stacked DCGAN and PacGAN2, WGAN-GP -------------
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
    # [0, 1]: MONO_FLOAT_COMPLETE. Adam 2e-4, betas (0.5, 0.999) and batch 64 as Radford et al.
    "dcgan_mnist": dict(mode=DataMode.MONO_FLOAT_COMPLETE, pack=1, d_norm="batch", n_critic=None,
                        lr=2e-4, betas=(0.5, 0.999), batch_size=64, epochs=8),
    # stackedMNIST (three grey MNIST training digits as R, G, B; MNISTData's 60,000, seed 0)
    "dcgan_stacked": dict(mode=DataMode.COLOR_FLOAT_COMPLETE, pack=1, d_norm="batch", n_critic=None,
                          lr=2e-4, betas=(0.5, 0.999), batch_size=64, epochs=9),
    # the same with the one change against mode collapse: PacGAN2 (the discriminator judges pairs)
    "pacgan_stacked": dict(mode=DataMode.COLOR_FLOAT_COMPLETE, pack=2, d_norm="batch", n_critic=None,
                           lr=2e-4, betas=(0.5, 0.999), batch_size=64, epochs=9),
    # dcgan_stacked with one change against its uneven digit frequencies: the samples come from an
    # exponential moving average of the generator's weights (decay 0.999 per generator step, about
    # one epoch of 938 steps; Yazici et al. 2019), the training itself unchanged
    "dcgan_stacked_ema": dict(mode=DataMode.COLOR_FLOAT_COMPLETE, pack=1, d_norm="batch", n_critic=None,
                              lr=2e-4, betas=(0.5, 0.999), batch_size=64, epochs=9, ema=0.999),
    # WGAN-GP with the DCGAN's generator; the critic has no normalisation (the penalty is per
    # sample), lambda 10, n_critic 5, Adam 1e-4 with betas (0.5, 0.9) as Gulrajani et al.'s
    # released MNIST code (their paper gives (0, 0.9)), batch 64
    "wgan_gp_mnist": dict(mode=DataMode.MONO_FLOAT_COMPLETE, pack=1, d_norm=None, n_critic=5, penalty=10.0,
                          lr=1e-4, betas=(0.5, 0.9), batch_size=64, epochs=10),
}


@torch.no_grad()
def gan_sample_scores(model, seed: int = GAN_SAMPLE_SEEDS[0]) -> dict:
    """The verifier's view of a generator's samples (n, C, 28, 28), drawn from
    torch.Generator().manual_seed(seed): n = 10,000 mono or 26,000 stacked (256 under DGM_SMOKE=1);
    predictability and coverage at IT3030's tolerance (0.8 mono, 0.5 stacked), and modes and KL to
    uniform with every sample counted by its argmax class (VEEGAN's and PacGAN's protocol)."""
    from .metrics import draw_samples, generation_quality
    n = 256 if settings.smoke_mode() else (GAN_STACKED_SAMPLES if model.channels == 3 else GAN_MONO_SAMPLES)
    samples = draw_samples(model, n, torch.Generator().manual_seed(seed), progress=True)
    return {"samples": n, "seed": seed, **_rounded(generation_quality(load_verifier(), samples), 4)}


def _fit_gan_recipe(name: str, images: torch.Tensor, s: dict, width: int, device, resume, latent_dim: int = 100):
    """A `models.GAN` (`latent_dim`, `width`, the channels and size of images (N, C, S, S), keeping a
    snapshot per epoch) trained on the images with `divergences.fit_gan` and the settings `s` (pack,
    d_norm, n_critic (None: `dcgan_step`, else `wgan_gp_step` with `penalty`), lr, betas,
    batch_size, epochs, and optionally ema, the decay of a weight average of the generator),
    resumable from `resume`. Returns the model in eval mode and the History."""
    from .divergences import dcgan_step, fit_gan, wgan_gp_step
    from .models import GAN
    model = GAN(channels=images.shape[1], latent_dim=latent_dim, width=width, image_size=images.shape[-1],
                pack=s.get("pack", 1), d_norm=s["d_norm"], snapshots=s["epochs"], ema=s.get("ema", 0.0)).to(device)
    step = (functools.partial(wgan_gp_step, n_critic=s["n_critic"], penalty=s["penalty"]) if s.get("n_critic")
            else dcgan_step)
    history = fit_gan(model, images, step, lr=s["lr"], betas=s["betas"], epochs=s["epochs"], batch_size=s["batch_size"],
                      resume_path=resume, fingerprint={"recipe": name, "settings": s}, desc=name)
    return model.eval(), history


def _train_gan(name: str, device, resume) -> Trained:
    """Train GAN_SETTINGS[name] with `divergences.fit_gan` (resumable from `resume`); score its samples."""
    s = GAN_SETTINGS[name]
    x, _ = MNISTData(s["mode"]).get_full_data_set(training=True)
    model, history = _fit_gan_recipe(name, x, s, width=64, device=device, resume=resume)
    metrics = {**gan_sample_scores(model), "epochs": len(history.epochs), "images_per_epoch": len(x),
               "batch_size": s["batch_size"]}
    return Trained(model, metrics, history.to_dict(), s["mode"].name)


@recipe("dcgan_mnist")
def _dcgan_mnist(device, resume) -> Trained:
    """CIL Series 9 Problem 3: a DCGAN (z of size 100, transposed convolutions 7 -> 14 -> 28, a
    CNN discriminator with batch norm) on grey MNIST, BCE with the non-saturating generator loss.
    Budget: 8 epochs of 60,000 images at 3.3 min of one core each, plus 0.3 min of scoring: about
    27 min on one core."""
    return _train_gan("dcgan_mnist", device, resume)


@recipe("dcgan_stacked")
def _dcgan_stacked(device, resume) -> Trained:
    """The plain DCGAN on stackedMNIST (3 channels, 1000 modes), for the VEEGAN/PacGAN mode count:
    dcgan_mnist's networks (3 channels in and out) and optimiser.
    Budget: 9 epochs of 60,000 images (PacGAN's: 50 of 128,000) at 3.2 min of one core each, plus
    1.3 min of scoring 26,000 samples: about 30 min on one core."""
    return _train_gan("dcgan_stacked", device, resume)


@recipe("pacgan_stacked")
def _pacgan_stacked(device, resume) -> Trained:
    """PacGAN2 on stackedMNIST: dcgan_stacked with a discriminator that judges two samples stacked
    along the channels (Lin et al. 2018); the same data, epochs and optimiser. Budget: 9 epochs of
    60,000 images at 2.0 min of one core each (the discriminator judges half as many inputs), plus
    1.3 min of scoring: about 19 min on one core."""
    return _train_gan("pacgan_stacked", device, resume)


@recipe("dcgan_stacked_ema")
def _dcgan_stacked_ema(device, resume) -> Trained:
    """dcgan_stacked whose samples come from an exponential moving average of the generator's
    weights (decay 0.999; `models.GAN` with ema): the same data, networks, initial weights,
    optimiser and epochs, so the two differ by the averaging alone. Budget: as dcgan_stacked, about
    30 min on one core."""
    return _train_gan("dcgan_stacked_ema", device, resume)


@recipe("wgan_gp_mnist")
def _wgan_gp_mnist(device, resume) -> Trained:
    """WGAN-GP on grey MNIST with the DCGAN's generator and a critic without normalisation:
    lambda 10, 5 critic steps per generator step, Adam 1e-4 betas (0.5, 0.9), batch 64. Budget: 10
    epochs of 60,000 images (9,380 critic and 1,876 generator steps) at 2.7 min of one core each,
    plus 0.3 min of scoring: about 27 min on one core."""
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


for _name in GAN_SETTINGS:
    EVALUATIONS[_name] = _evaluate_gan
# --- end of the GAN section -------------------------------------------------------------------------


# ==================================================================================================
# --- SVHN end to end and FID (issue 11: IFT6135 Problem 3, notebook 11) ---------------------------
# Data: `data.load_svhn()`, full SVHN when it is on disk, else the 10,000-image SVHN sample split
# 7,000 / 1,000 / 2,000 with seed 0 (train / validation / held-out); the manifest's data_mode says
# which the weights were trained on. svhn_classifier gives the SVHN FID features; vae_svhn and
# wgan_gp_svhn are Problem 3's two models: latent size 100 and one generator architecture
# (`nets.DCGANGenerator` at 32x32, width SVHN_WIDTH; the VAE's decoder is the same network without
# its final sigmoid, which the unit-variance Gaussian likelihood applies as its mean g(z)).
# Budgets: CPU time per step measured with OMP_NUM_THREADS=1 while two other trainings ran on the
# two cores (process time, so the sharing is not counted), times the steps.

SVHN_CLASSIFIER = "svhn_classifier"
SVHN_LATENT = 100            # IFT6135 Problem 3: latent size 100 for both models
SVHN_WIDTH = 32              # generator width w: 100 -> 2w x 8 x 8 -> w x 16 x 16 -> 3 x 32 x 32
FID_SAMPLES = 1000           # IFT6135 Problem 3 scores 1,000 samples of each model
FID_SEED = 0                 # torch.Generator seed of the scored samples
FID_DATASETS = ("mnist", "mnist-binary", "svhn")


def _svhn_data_mode(svhn) -> str:
    """The manifest's data_mode of an SVHN checkpoint: which SVHN, and the split it was trained on."""
    sizes = svhn.split
    n = sum(sizes.values())
    what = ("full SVHN (official train and test sets)" if svhn.source == "full"
            else f"SVHN sample ({n:,} SVHN test images, not the full dataset)")
    return (f"{what}, split with seed {svhn.seed} into {sizes['train']:,} train / {sizes['val']:,} validation / "
            f"{sizes['test']:,} held-out images; trained on the train part")


def svhn_classifier_net(width: int = 32) -> DigitClassifier:
    """The SVHN classifier: `DigitClassifier` on (N, 3, 32, 32) colour images, 10 digits, 128 features."""
    return DigitClassifier(width=width, channels=3, image_size=32)


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
    from .verification import random_shift
    svhn = load_svhn_data()
    model = svhn_classifier_net().to(device)
    history = fit(model, classification_loss, svhn.train, svhn.val, epochs=24, batch_size=128,
                  optimizer=torch.optim.AdamW(model.parameters(), weight_decay=5e-4), scheduler=one_cycle(3e-3),
                  augment=random_shift, early_stopping=EarlyStopping(patience=4), resume_path=resume,
                  desc=SVHN_CLASSIFIER)
    model.eval()
    from .metrics import batched, calculate_fid_score, feature_batches
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


def load_svhn_data(verbose: bool = True):
    """`data.load_svhn()` with the workbook's split (seed `data.SVHN_SPLIT_SEED`)."""
    from .data import load_svhn
    return load_svhn(verbose=verbose)


def load_svhn_classifier(device: torch.device | str | None = None) -> nn.Module:
    """The SVHN classifier on its shipped `svhn_classifier` checkpoint (CheckpointError naming the
    command that trains it when there is none)."""
    return checkpoints.load(SVHN_CLASSIFIER, device=device)


def fid_feature_extractor(dataset: str, device: torch.device | str | None = None):
    """(features, channels, size, description) of a FID dataset: features maps images (N, C, S, S)
    to (N, 128) on the CPU, the penultimate layer of the verification net ("mnist", "mnist-binary":
    (N, 1, 28, 28)) or of the SVHN classifier ("svhn": (N, 3, 32, 32))."""
    if dataset not in FID_DATASETS:
        raise ValueError(f"unknown FID dataset {dataset!r}; expected one of {FID_DATASETS}")
    if dataset == "svhn":
        net = load_svhn_classifier(device)
        sha = checkpoints.entry(SVHN_CLASSIFIER)["sha256"][:12]
        dev = next(net.parameters()).device
        return (lambda x: net.features(x.to(dev)).cpu()), 3, 32, f"{SVHN_CLASSIFIER} ({sha}) penultimate layer, 128 units"
    verifier = load_verifier(device)
    sha = checkpoints.entry(VERIFIER)["sha256"][:12]
    return verifier.features, 1, 28, f"{VERIFIER} ({sha}) penultimate layer, 128 units"


def fid_test_images(dataset: str, n: int | None = None) -> tuple[torch.Tensor, str]:
    """The reference images of a FID dataset and their description: the MNIST test set in grey
    values ("mnist", MONO_FLOAT_COMPLETE) or binarised ("mnist-binary", MONO_BINARY_COMPLETE), or
    the held-out SVHN part ("svhn"); the first n of them when n is given."""
    if dataset not in FID_DATASETS:
        raise ValueError(f"unknown FID dataset {dataset!r}; expected one of {FID_DATASETS}")
    if dataset == "svhn":
        svhn = load_svhn_data(verbose=False)
        x, what = svhn.test[0], f"SVHN held-out part ({svhn.source})"
    else:
        mode = DataMode.MONO_FLOAT_COMPLETE if dataset == "mnist" else DataMode.MONO_BINARY_COMPLETE
        x, what = MNISTData(mode).get_full_data_set(training=False)[0], f"MNIST test set ({mode.name})"
    if n is not None:
        if not 1 <= n <= len(x):
            raise ValueError(f"test_samples must be between 1 and {len(x)} (the {what}), got {n}")
        x = x[:n]
    return x, what


class FIDResult(NamedTuple):
    """A FID score with what it was computed on, and the seconds spent on features and on the distance."""
    fid: float
    dataset: str
    n_samples: int
    n_test: int
    features: str
    test_set: str
    seconds_features: float
    seconds_distance: float

    def __str__(self) -> str:
        return (f"FID {self.fid:.4f}: {self.n_samples:,} samples against {self.n_test:,} images of the {self.test_set}, "
                f"features of {self.features}")


def _fid_image_shape(dataset: str) -> tuple[int, int]:
    """(channels, size) of the images a FID dataset scores; ValueError for an unknown dataset."""
    if dataset not in FID_DATASETS:
        raise ValueError(f"unknown FID dataset {dataset!r}; expected one of {FID_DATASETS}")
    return (3, 32) if dataset == "svhn" else (1, 28)


def fid_against_test_sets(image_sets, dataset: str = "mnist", test_samples: int | None = None,
                          device: torch.device | str | None = None) -> list[FIDResult]:
    """FID of each set of images (N, C, S, S) in [0, 1] against the test images of `dataset`
    (`fid_test_images`, the first `test_samples` of them), on the dataset's classifier features
    (`fid_feature_extractor`). The test features are computed once (the first result's
    seconds_features includes them); every set is checked before any feature is computed."""
    from .data import validate_images
    from .metrics import calculate_fid_score, feature_batches
    if not image_sets:
        raise ValueError("name at least one set of samples")
    channels, size = _fid_image_shape(dataset)
    for images in image_sets:
        validate_images(images, channels=(channels,), size=size, name=f"{dataset} samples")
    features, _, _, described = fid_feature_extractor(dataset, device)
    test, test_set = fid_test_images(dataset, test_samples)
    start = time.perf_counter()
    test_features = torch.cat(list(feature_batches(features, test)))
    test_seconds = time.perf_counter() - start
    results = []
    for i, images in enumerate(image_sets):
        start = time.perf_counter()
        sample_features = torch.cat(list(feature_batches(features, images)))
        middle = time.perf_counter()
        score = calculate_fid_score([sample_features], [test_features])
        end = time.perf_counter()
        results.append(FIDResult(score, dataset, len(images), len(test), described, test_set,
                                 round(middle - start + (test_seconds if i == 0 else 0.0), 3), round(end - middle, 3)))
    return results


def fid_against_test(images: torch.Tensor, dataset: str = "mnist", test_samples: int | None = None,
                     device: torch.device | str | None = None) -> FIDResult:
    """`fid_against_test_sets` for one set of images (N, C, S, S)."""
    return fid_against_test_sets([images], dataset, test_samples, device)[0]


def fid_of_directories(directories, dataset: str = "mnist", test_samples: int | None = None,
                       device: torch.device | str | None = None) -> list[FIDResult]:
    """`python -m helpers fid DIR [DIR ...]`: the PNGs of each directory (and its subdirectories, the
    layout of IFT6135's score_fid.py), all read and checked to be the dataset's size and colour mode
    first, then scored against one set of test features (`fid_against_test_sets`)."""
    from .data import read_png_directory
    if not directories:
        raise ValueError("name at least one directory of samples")
    channels, size = _fid_image_shape(dataset)
    return fid_against_test_sets([read_png_directory(d, channels, size) for d in directories], dataset,
                                 test_samples, device)


def svhn_sample_fid(model) -> dict:
    """FID of FID_SAMPLES samples of a generator (from torch.Generator().manual_seed(FID_SEED))
    against the held-out SVHN part, when the svhn_classifier checkpoint exists (None otherwise).
    Under DGM_SMOKE=1: 256 samples."""
    from .metrics import draw_samples
    if not checkpoints.exists(SVHN_CLASSIFIER):
        return {"fid": None, "fid_note": f"no {SVHN_CLASSIFIER} checkpoint to compute FID with"}
    n = 256 if settings.smoke_mode() else FID_SAMPLES
    samples = draw_samples(model, n, torch.Generator().manual_seed(FID_SEED))
    result = fid_against_test(samples, "svhn", device=model.device)
    return {"fid": round(result.fid, 4), "fid_samples": n, "fid_test_images": result.n_test, "fid_seed": FID_SEED,
            "fid_features": result.features}


def _svhn_vae(name: str, device, resume, prior: dict | None = None) -> Trained:
    """vae_svhn's training and metrics (below); `prior` ({"prior": name, "prior_kwargs": {...}})
    replaces N(0, I) and nothing else (the VAE builds its prior last, so the encoder's and decoder's
    initial weights, the batches and the noise draws are the same)."""
    svhn = load_svhn_data()
    model = VAE(channels=3, latent_dim=SVHN_LATENT, width=SVHN_WIDTH, likelihood="unit_gaussian", arch="dcgan",
                image_size=32, **(prior or {})).to(device)
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
    metrics.update(svhn_sample_fid(model))
    return Trained(model, _rounded(metrics, 3), history.to_dict(), _svhn_data_mode(svhn))


@recipe("vae_svhn")
def _vae_svhn(device, resume) -> Trained:
    """IFT6135 Problem 3's VAE on SVHN: latent size 100, p(x|z) = N(x; g(z), I) with g(z) =
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
    ELBO of the same images: mean, standard error, and the per-image values for paired comparisons."""
    from .metrics import elbo, importance_log_px, mean_and_se
    svhn = load_svhn_data()
    x = svhn.test[0][:256] if settings.smoke_mode() else svhn.test[0]
    k = 4 if settings.smoke_mode() else SVHN_IS_K
    log_px = importance_log_px(model, x.to(model.device), k, generator=torch.Generator().manual_seed(SVHN_IS_SEED),
                               progress=True)
    elbos = elbo(model, x.to(model.device), generator=torch.Generator().manual_seed(SVHN_IS_SEED))
    out = {"images": len(x), "importance_samples": k, "seed": SVHN_IS_SEED,
           "data": f"SVHN ({svhn.source}), held-out part of the seed-{svhn.seed} split"}
    for key, values in (("test_log_px", log_px.cpu().double()), ("test_elbo", elbos.cpu().double())):
        mean, se = mean_and_se(values)
        out[key] = {"mean": round(mean, 3), "se": round(se, 3), "values": [round(v, 2) for v in values.tolist()]}
    return out


EVALUATIONS["vae_svhn"] = _evaluate_svhn_vae
EVALUATIONS["vae_svhn_flow"] = _evaluate_svhn_vae


WGAN_GP_SVHN = dict(d_norm=None, n_critic=5, penalty=10.0, lr=2e-4, betas=(0.5, 0.9), batch_size=64, epochs=70)


@recipe("wgan_gp_svhn")
def _wgan_gp_svhn(device, resume) -> Trained:
    """IFT6135 Problem 3's GAN on SVHN: WGAN-GP (lambda 10, 5 critic steps per generator step, Adam
    2e-4 with betas (0.5, 0.9), batch 64) with vae_svhn's generator architecture (`nets.DCGANGenerator`,
    latent size 100, width 32) and a critic of two stride-2 convolutions without normalisation
    (`nets.DCGANDiscriminator`, norm None: the gradient penalty is per sample), trained through
    `divergences.fit_gan` / `wgan_gp_step` on the SVHN train part for 70 epochs (7,700 critic and
    1,540 generator steps), keeping a decoding of 16 fixed codes after every epoch. The learning rate
    is twice wgan_gp_mnist's because the budget allows few generator steps; it is not tuned.
    Metrics: the last epoch's mean critic estimate of W1, FID of 1,000 samples.
    Budget: 0.102 s of one core per critic step (a generator step every 5th), 110 steps an epoch,
    about 11.2 s an epoch: about 13 min on one core, plus 10 s of metrics."""
    s = WGAN_GP_SVHN
    svhn = load_svhn_data()
    x = svhn.train[0]
    model, history = _fit_gan_recipe("wgan_gp_svhn", x, s, width=SVHN_WIDTH, device=device, resume=resume,
                                     latent_dim=SVHN_LATENT)
    last = history.epochs[-1]
    per_epoch = -(-len(x) // s["batch_size"]) if not settings.smoke_mode() else min(2, -(-len(x) // s["batch_size"]))
    metrics = {"epochs": len(history.epochs), "train_images": len(x), "batch_size": s["batch_size"],
               "critic_steps": per_epoch * len(history.epochs),
               "last_epoch_wasserstein": last.get("train_wasserstein"),
               "last_epoch_penalty": last.get("train_penalty")}
    metrics["generator_steps"] = metrics["critic_steps"] // s["n_critic"]
    metrics.update(svhn_sample_fid(model))
    return Trained(model, _rounded(metrics, 4), history.to_dict(), _svhn_data_mode(svhn))
# --- end of the SVHN section ------------------------------------------------------------------------
