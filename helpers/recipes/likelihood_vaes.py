"""The four decoder likelihoods on grey MNIST (notebook 04) and the z = 100 VAE on binarised MNIST
(notebook 07): recipes and the K = 200 evaluation."""
from __future__ import annotations

import functools

import torch

from ..data import DataMode, MNISTData, binarized_mnist, split_validation
from ..models import VAE, model_loss
from ..training import fit
from ..training import evaluate as evaluate_loss
from .registry import (
    LIKELIHOOD_EPOCH_CAP, RECIPES, Trained, _rounded, evaluation, likelihood_stopping, recipe,
)


# --- decoder likelihoods on grey MNIST (notebook 04) ----------------------------------------------

LIKELIHOOD_VAES = {
    "vae_gaussian": ("gaussian", {"min_variance": 1e-3}),
    "vae_beta": ("beta", {"epsilon": 1e-3}),
    "vae_categorical": ("categorical", {"bins": 16}),
    "vae_bernoulli_grey": ("bernoulli", {}),
}



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
    from ..metrics import elbo
    x_test, _ = MNISTData(mode).get_full_data_set(training=False)
    g = torch.Generator().manual_seed(0)
    metrics = {"val_elbo": elbo(model, val_set[0], generator=g).mean().item(),
               "test_elbo": elbo(model, x_test, generator=g).mean().item(),
               "epochs": len(history.epochs), "best_epoch": history.best_epoch}
    return Trained(model, _rounded(metrics, 3), history.to_dict(), mode.name)


for _name, (_lik, _kwargs) in LIKELIHOOD_VAES.items():
    RECIPES[_name] = functools.partial(_likelihood_vae, _lik, _kwargs)



# --- the z = 100 VAE on binarised MNIST (notebook 07) ---------------------------------------------

BINARIZATION_SEED = 0


Z100_EPOCH_CAP = 150   # an upper bound only: the stopping criterion ends the run long before


@recipe("vae_z100")
def _vae_z100(device, resume) -> Trained:
    data = binarized_mnist(seed=BINARIZATION_SEED)
    model = VAE(channels=1, latent_dim=100, width=32, arch="pooled").to(device)
    history = fit(model, model_loss, (data["train"],), (data["val"],), epochs=Z100_EPOCH_CAP, batch_size=128, lr=1e-3,
                  early_stopping=likelihood_stopping(), resume_path=resume, desc="vae_z100")
    from ..metrics import elbo
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
    from ..metrics import elbo, importance_log_px
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

