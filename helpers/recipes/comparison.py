"""One table of every generative model (notebook 11 §9): which checkpoints enter it, the FID test
set and sampling options of each, their stored likelihoods with the protocol each was measured
under, the stackedMNIST rows as notebooks 02, 03, 08 and 09 print them, and the sample
statistics of the SVHN comparison (IFT6135 Problem 3, qualitative 1)."""
from __future__ import annotations

from typing import NamedTuple

import torch

from .. import checkpoints
from .registry import stored_evaluation


class ComparedModel(NamedTuple):
    """A checkpoint in the comparison: its name, its notebook and what it is, the FID dataset of
    its data mode ("mnist", "mnist-binary", "svhn") and the keyword arguments of its `sample()`."""
    name: str
    label: str
    dataset: str
    sample_kwargs: dict


MNIST_MODELS = (
    ComparedModel("ae_mono", "02 AE 16, fitted Gaussian", "mnist-binary", {"prior": "fitted"}),
    ComparedModel("vae_mono", "03 VAE 16, N(0, I)", "mnist-binary", {}),
    ComparedModel("vae_mono_flow", "08 VAE 16, RealNVP prior", "mnist-binary", {}),
    ComparedModel("vae_z100", "07 VAE 100", "mnist-binary", {}),
    ComparedModel("ae_2d", "05 AE 2, fitted Gaussian", "mnist", {"prior": "fitted"}),
    ComparedModel("vae_2d", "05 VAE 2", "mnist", {}),
    ComparedModel("vae_bernoulli_grey", "04 VAE 16, Bernoulli (grey)", "mnist", {}),
    ComparedModel("vae_gaussian", "04 VAE 16, Gaussian", "mnist", {}),
    ComparedModel("vae_beta", "04 VAE 16, Beta", "mnist", {}),
    ComparedModel("vae_categorical", "04 VAE 16, categorical", "mnist", {}),
    ComparedModel("dcgan_mnist", "09 DCGAN", "mnist", {}),
    ComparedModel("wgan_gp_mnist", "10 WGAN-GP", "mnist", {}),
)
SVHN_MODELS = (
    ComparedModel("vae_svhn", "VAE, N(0, I) prior", "svhn", {}),
    ComparedModel("wgan_gp_svhn", "WGAN-GP", "svhn", {}),
    ComparedModel("vae_svhn_flow", "08 VAE, RealNVP prior", "svhn", {}),
)
STACKED_MONO = (("ae_mono", "AE mono, channel-wise, fitted codes"), ("vae_mono", "VAE mono, channel-wise"),
                ("vae_mono_flow", "VAE mono, RealNVP prior, channel-wise"))
STACKED_JOINT = (("ae_color", "AE joint 3-channel, fitted codes"), ("vae_color", "VAE joint 3-channel"))
STACKED_GANS = (("dcgan_stacked", "DCGAN on stackedMNIST"), ("pacgan_stacked", "PacGAN2 on stackedMNIST"))

LIKELIHOOD_PROTOCOLS = {
    "a": "binarised (0.5) test set: one-sample ELBO of all 10,000 images; log p(x) importance-sampled "
         "(K = 200) on the first 2,000 test images",
    "b": "stochastically binarised test set (seed 0), all 10,000 images; log p(x) importance-sampled with K = 200",
    "c": "grey values, all 10,000 test images, each under its own likelihood (notebook 04): a density for the "
         "Gaussian and Beta decoders, a probability of 16 levels for the categorical, the Bernoulli cross-entropy "
         "of grey values for the others; not comparable across these rows or with a or b",
}


def available(models) -> tuple[list[ComparedModel], list[str]]:
    """The models whose checkpoint is in the manifest, and the names of those that are not."""
    present = [m for m in models if checkpoints.exists(m.name)]
    return present, [m.name for m in models if m not in present]


def stored_likelihood(name: str) -> tuple[float | None, float | None, str]:
    """(test ELBO, log p(x), protocol letter of LIKELIHOOD_PROTOCOLS) of an MNIST model, as its own
    notebook prints them: vae_z100 from its evaluation (b), vae_mono and vae_mono_flow from notebook
    08's prior comparison (a), the other VAEs' test ELBO from their metrics (c); Nones for a model
    without a likelihood."""
    if name == "vae_z100":
        ev = stored_evaluation(name)
        return ev["test_elbo"], ev["test_log_px"], "b"
    if name in ("vae_mono", "vae_mono_flow"):
        pc = stored_evaluation(name, "prior_comparison")
        return pc["test_elbo"]["mean"], pc["test_log_px"]["mean"], "a"
    elbo = checkpoints.entry(name).get("metrics", {}).get("test_elbo")
    return (elbo, None, "c") if elbo is not None else (None, None, "")


def stored_predictability(name: str) -> float | None:
    """The IT3030 predictability of 10,000 samples as the model's own notebook prints it: for a GAN
    the mean over the sampling seeds of its stored evaluation, for the others the figure stored with
    the weights (None when there is none)."""
    from .gans import GAN_SETTINGS
    if name in GAN_SETTINGS:
        return stored_evaluation(name)["predictability"]["mean"]
    stored = checkpoints.entry(name).get("metrics", {})
    return stored.get("sample_predictability", stored.get("predictability"))


def stacked_rows() -> list[dict]:
    """The stackedMNIST rows of every model with a stored mode count, each {"model", "checkpoint",
    "samples", "modes", "kl", "modes_sd", "kl_sd", "predictability", "coverage"} as its notebook
    prints it: the real test images and the AEs and VAEs from their stored samples (one draw of
    25,600, notebooks 02, 03, 08), the GANs as the mean and standard deviation over the three
    sampling seeds of their stored evaluation (26,000 each, notebook 09). Missing checkpoints are
    left out."""
    real = stored_evaluation("verification_net")["real_stacked"]
    rows = [dict(model="real stacked test images", checkpoint="-", samples=real["n"], modes=real["modes"],
                 kl=real["kl"], predictability=real.get("predictability"), coverage=real.get("coverage"))]
    for names, key in ((STACKED_MONO, "channelwise_samples"), (STACKED_JOINT, "samples")):
        for name, label in names:
            if checkpoints.exists(name):
                ev = stored_evaluation(name)[key]
                rows.append(dict(model=label, checkpoint=name, samples=ev["n"], modes=ev["modes"], kl=ev["kl"],
                                 predictability=ev.get("predictability"), coverage=ev.get("coverage")))
    for name, label in STACKED_GANS:
        if checkpoints.exists(name):
            ev = stored_evaluation(name)
            rows.append(dict(model=label, checkpoint=name, samples=ev["by_seed"][0]["samples"],
                             modes=ev["modes"]["mean"], modes_sd=ev["modes"]["sd"], kl=ev["kl"]["mean"],
                             kl_sd=ev["kl"]["sd"], predictability=ev["predictability"]["mean"],
                             coverage=ev["coverage"]["mean"]))
    return rows


@torch.no_grad()
def classifier_view(classifier, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, S, S) -> the classifier's confidence in its top digit and that digit, each (N,) on the CPU."""
    from ..metrics import batched
    device = next(classifier.parameters()).device
    return batched(lambda b: classifier(b.to(device)).softmax(1), images, batch_size).max(1)


def sample_statistics(images: torch.Tensor, classifier, reference, real_labels: torch.Tensor) -> dict:
    """What IFT6135 Problem 3's qualitative comparison looks at, in numbers, for images (N, 3, S, S):
    sharpness (`frechet.sharpness`, mean), diversity as the mean pairwise distance in pixels and in
    the FID features of `reference` (a `FIDReference`), the fraction the classifier reads with
    confidence at least 0.8, the KL from its predicted-digit histogram to that of `real_labels`, and
    the digit counts."""
    from ..frechet import mean_pairwise_distance, sharpness
    confidence, digit = classifier_view(classifier, images)
    counts = torch.bincount(digit, minlength=10)
    freq = counts.double() / len(digit)
    real = torch.bincount(real_labels, minlength=10).double() / len(real_labels)
    kl = (freq * (freq.clamp(min=1e-12) / real).log()).sum().item()
    return dict(sharpness=sharpness(images).mean().item(), pixel=mean_pairwise_distance(images.flatten(1)),
                feature=mean_pairwise_distance(reference.features_of(images)),
                confident=(confidence >= 0.8).float().mean().item(), kl=kl, digits=counts.tolist())
