"""The 2-D AE and VAE of notebook 05 and the encoder-free inference of notebook 06 (its stored
evaluation of vae_z100)."""
from __future__ import annotations

import functools
import time

import torch

from ..data import DataMode, MNISTData, binarized_mnist, split_validation
from ..models import VAE, AutoEncoder, model_loss
from ..training import fit
from ..training import evaluate as evaluate_loss
from .registry import (
    LIKELIHOOD_EPOCH_CAP, RECIPES, Trained, _rounded, evaluation, likelihood_stopping,
    load_verifier, smoke_count, value_summary,
)
from .likelihood_vaes import BINARIZATION_SEED


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
        from ..metrics import elbo
        g = torch.Generator().manual_seed(0)
        metrics.update({"val_elbo": elbo(model, val_set[0], generator=g).mean().item(),
                        "test_elbo": elbo(model, x_test, generator=g).mean().item()})
    return Trained(model.eval(), _rounded(metrics, 3), history.to_dict(), mode.name)


for _kind in ("ae", "vae"):
    RECIPES[f"{_kind}_2d"] = functools.partial(_two_dimensional, _kind)

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
    from .. import inference
    from ..metrics import elbo, importance_log_likelihood, importance_log_px
    from ..models import reparameterize
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
    from .. import inference
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



@evaluation("vae_z100", part="encoder_free")
def _evaluate_vae_z100_encoder_free(model) -> dict:
    """2AMU20 Task 4 on the first EF_IMAGES binarised test images: the encoder-free and the
    encoder's ELBO against log p(x) (the amortisation and approximation gaps), and for every mask of
    `inference.MASKS` how often the verifier sees the original digit in the completions and in the
    baselines. Each figure with its standard error and the mean over the first EF_LIVE images."""
    from .. import inference
    data = binarized_mnist(seed=BINARIZATION_SEED)
    n = smoke_count(EF_IMAGES)
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
    out["gap"] = {k: value_summary(v, live) for k, v in gap.items()}
    out["gap"]["amortisation"] = value_summary(gap["encoder_free_elbo"] - gap["encoder_elbo"], live)
    out["gap"]["approximation"] = value_summary(gap["log_px"] - gap["encoder_free_elbo"], live)
    out["gap"]["approximation_fitted"] = value_summary(gap["log_px_fitted"] - gap["encoder_free_elbo"], live)
    out["gap"]["refined_minus_free"] = value_summary(gap["refined_elbo"] - gap["encoder_free_elbo"], live)
    out["gap"]["free_at_least_encoder"] = round((gap["encoder_free_elbo"] >= gap["encoder_elbo"]).double().mean().item(), 4)

    verifier = load_verifier()
    fill = data["train"].mean(0, keepdim=True)
    original = (verifier.classify(x).labels == labels).double()
    out["completion"] = {"original": value_summary(original, live), "random_fraction": EF_RANDOM_FRACTION,
                         "tolerance": "argmax class"}
    for kind in inference.MASKS:
        start = time.perf_counter()
        scores = completion_scores(model, verifier, x, labels, kind, fill, progress=True)
        out["completion"][kind] = {k: value_summary(v.double(), live) for k, v in scores.items()}
        out["completion"][kind]["seconds"] = round(time.perf_counter() - start, 1)
    return out

