"""The verification classifier: judges generated images by what a good MNIST CNN sees in them.

One CNN (`nets.DigitClassifier`) trained on mono MNIST is applied to each channel of a
3-channel image; the stacked class is R + 10 G + 100 B and its confidence is the product
of the three per-channel confidences.

`Verifier.classify(images)` returns a `Classification`, an explicit result that answers
predictability, coverage, the mode histogram and its KL to uniform without classifying again.
Nothing is cached anywhere: classify once and ask the result.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .data import validate_images

DEFAULT_TOLERANCE = {1: 0.8, 3: 0.5}  # IT3030's tolerances for mono and stacked images
_PLACE_VALUES = torch.tensor([1, 10, 100])


class Predictability(NamedTuple):
    predictability: float          # fraction of images classified with confidence >= tolerance
    accuracy: float | None         # fraction also classified as their label (None without labels)


OUTLIER = -1  # label of a noise image in a training batch (see `add_noise_outliers`)


def classification_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
                        outlier_weight: float = 0.5) -> dict[str, torch.Tensor]:
    """Cross-entropy of logits on (images (B, 1, 28, 28), labels (B,)); also logs accuracy.

    Rows labelled `OUTLIER` are noise images: their loss is the cross-entropy to the uniform
    distribution over digits, as KL(uniform || softmax) ("outlier exposure"), which teaches the
    net to be unsure of them. Written with masks and sums only, so a training step never waits
    for the device (no boolean indexing, no data-dependent branch).
    """
    images, labels = batch
    logits = model(images)
    digit = (labels != OUTLIER).float()
    n_digits = digit.sum().clamp_min(1.0)
    ce = F.cross_entropy(logits, labels.clamp_min(0), reduction="none")
    log_probs = F.log_softmax(logits, dim=1)
    # KL(uniform || softmax): zero when the net is completely unsure of a noise image
    kl_uniform = -log_probs.mean(1) - math.log(logits.shape[1])
    outliers = 1.0 - digit
    loss = (ce * digit).sum() / n_digits + outlier_weight * (kl_uniform * outliers).sum() / outliers.sum().clamp_min(1.0)
    accuracy = ((logits.argmax(1) == labels).float() * digit).sum() / n_digits
    return {"loss": loss, "accuracy": accuracy}


def noise_images(n: int, generator: torch.Generator, size: int = 28) -> torch.Tensor:
    """(n, 1, size, size) non-digit images in [0, 1]: a mix of uniform noise, binary noise of
    random density and smooth blobs (blurred noise, contrast-stretched)."""
    uniform = torch.rand(n, 1, size, size, generator=generator)
    density = torch.rand(n, 1, 1, 1, generator=generator)
    binary = (torch.rand(n, 1, size, size, generator=generator) < density).float()
    blobs = F.avg_pool2d(torch.rand(n, 1, size, size, generator=generator), 7, stride=1, padding=3)
    low = blobs.amin(dim=(2, 3), keepdim=True)
    high = blobs.amax(dim=(2, 3), keepdim=True)
    blobs = (blobs - low) / (high - low + 1e-6)
    kind = torch.randint(0, 3, (n, 1, 1, 1), generator=generator)
    return torch.where(kind == 0, uniform, torch.where(kind == 1, binary, blobs))


def add_noise_outliers(batch: tuple[torch.Tensor, torch.Tensor], generator: torch.Generator,
                       fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Append round(fraction * B) `noise_images` labelled `OUTLIER` to (images (B, 1, H, W), labels (B,))."""
    images, labels = batch
    n = max(1, round(fraction * len(images)))
    noise = noise_images(n, generator, images.shape[-1]).to(images.device)
    return (torch.cat([images, noise]),
            torch.cat([labels, torch.full((n,), OUTLIER, dtype=labels.dtype, device=labels.device)]))


def augment_for_verification(batch: tuple[torch.Tensor, torch.Tensor], generator: torch.Generator):
    """Training augmentation of the verification net: random shifts, then noise outliers."""
    return add_noise_outliers(random_shift(batch, generator), generator)


def random_shift(batch: tuple[torch.Tensor, ...], generator: torch.Generator, max_shift: int = 2
                 ) -> tuple[torch.Tensor, ...]:
    """Augment (images (B, C, H, W), ...) by shifting each image by up to `max_shift` pixels in x
    and y independently (zero fill). Other tensors in the batch pass through unchanged."""
    images, *rest = batch
    b, c, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)                       # (B, C, H+2s, W+2s)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b, 1), generator=generator)
    rows = (dy + torch.arange(h)).to(images.device)                 # (B, H)
    cols = (dx + torch.arange(w)).to(images.device)                 # (B, W)
    shifted = padded[torch.arange(b, device=images.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return (shifted.permute(0, 3, 1, 2).contiguous(), *rest)       # (B, H, W, C) -> (B, C, H, W)


def _check_tolerance(tolerance: float) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0.0 <= tolerance <= 1.0:
        raise ValueError(f"tolerance must be a number in [0, 1] (a confidence), got {tolerance!r}")
    return float(tolerance)


def kl_to_uniform(counts: torch.Tensor) -> float:
    """KL(p || uniform) in nats for a histogram `counts` (K,) with p = counts / sum (0 log 0 = 0).
    Ranges from 0 (perfectly uniform) to log K (all mass on one class)."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.dim() != 1 or len(counts) == 0 or (counts < 0).any():
        raise ValueError("counts must be a non-empty 1-D tensor of non-negative counts")
    total = counts.sum()
    if total == 0:
        return math.inf  # nothing classified: as far from uniform as it gets
    p = counts / total
    nz = p > 0
    return float((p[nz] * torch.log(p[nz] * len(p))).sum())


@dataclass(frozen=True)
class Classification:
    """What the verifier saw in N images with C channels.

    digits (N, C): each channel's most likely digit; digit_confidence (N, C): its probability;
    labels (N,): the class sum_c digit_c 10^c (0..9 mono, 0..999 stacked); confidence (N,): the
    product of the channel confidences.
    """

    digits: torch.Tensor
    digit_confidence: torch.Tensor

    @property
    def channels(self) -> int:
        return self.digits.shape[1]

    @property
    def n_classes(self) -> int:
        return 10 ** self.channels

    @property
    def labels(self) -> torch.Tensor:
        return (self.digits * _PLACE_VALUES[: self.channels]).sum(1)

    @property
    def confidence(self) -> torch.Tensor:
        return self.digit_confidence.prod(dim=1)

    def __len__(self) -> int:
        return len(self.digits)

    def confident(self, tolerance: float | None = None) -> torch.Tensor:
        """Bool (N,): confidence >= tolerance (default IT3030's: 0.8 mono, 0.5 stacked)."""
        tol = DEFAULT_TOLERANCE[self.channels] if tolerance is None else _check_tolerance(tolerance)
        return self.confidence >= tol

    def predictability(self, tolerance: float | None = None) -> float:
        """Fraction of images classified with confidence >= tolerance."""
        if len(self) == 0:
            raise ValueError("no images were classified; need at least one image")
        return self.confident(tolerance).float().mean().item()

    def accuracy(self, labels: torch.Tensor, tolerance: float | None = None) -> float:
        """Fraction of images both confident and classified as `labels` (N,)."""
        if not isinstance(labels, torch.Tensor) or labels.shape != self.labels.shape:
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"labels must be a tensor of shape ({len(self)},), got {got}")
        return (self.confident(tolerance) & (self.labels == labels.cpu())).float().mean().item()

    def mode_histogram(self, tolerance: float = 0.0) -> torch.Tensor:
        """(n_classes,) int64 counts of the predicted classes of the images with confidence >=
        tolerance. The default 0.0 counts every image by its argmax class, the protocol of
        VEEGAN and PacGAN for stackedMNIST modes."""
        keep = self.confident(tolerance)
        return torch.bincount(self.labels[keep], minlength=self.n_classes)

    def modes(self, tolerance: float = 0.0) -> int:
        """How many classes the histogram hits at least once."""
        return int((self.mode_histogram(tolerance) > 0).sum())

    def kl_to_uniform(self, tolerance: float = 0.0) -> float:
        """KL(class histogram || uniform over n_classes), nats."""
        return kl_to_uniform(self.mode_histogram(tolerance))

    def coverage(self, tolerance: float | None = None) -> float:
        """Fraction of the 10 (or 1000) classes seen among confidently classified images (IT3030's
        coverage; default tolerance 0.8 mono, 0.5 stacked)."""
        tol = DEFAULT_TOLERANCE[self.channels] if tolerance is None else tolerance
        return self.modes(tol) / self.n_classes


class Verifier:
    """Classifies mono (N, 1, 28, 28) or stacked (N, 3, 28, 28) images in [0, 1] with one CNN.

    The verifier works on its own copy of the network (eval mode, channels_last, about 1.5x
    faster on CPU), so the caller's module is left as it was."""

    def __init__(self, net: nn.Module, batch_size: int = 512):
        self.net = copy.deepcopy(net).eval().to(memory_format=torch.channels_last)
        self.batch_size = batch_size  # moderate: huge batches spend their time allocating activations

    @torch.no_grad()
    def digit_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, 28, 28) -> (N, C, 10) softmax probabilities of each channel's digit."""
        validate_images(images)
        n, c = images.shape[:2]
        flat = images.reshape(n * c, 1, 28, 28)  # row n*C + k is channel k of image n
        device = next(self.net.parameters()).device
        probs = [F.softmax(self.net(chunk.to(device).contiguous(memory_format=torch.channels_last)), dim=1).cpu()
                 for chunk in flat.split(self.batch_size)]
        return torch.cat(probs).reshape(n, c, 10) if probs else torch.zeros(0, c, 10)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, 28, 28) -> (N, C * 128) on the CPU: the net's penultimate layer (`DigitClassifier.
        features`, the 128-unit hidden layer after the conv stages) of each channel, channels side by
        side. These are the FID features of MNIST (128 per mono image: a covariance of them needs
        well over 128 images, hence FID on 1,000 samples or more). Of the shipped verification_net's
        128 units, about 30 are 0 on every MNIST image (ReLU units that never fire): their rows and
        columns of a covariance are 0, which `frechet.frechet_distance` handles."""
        validate_images(images)
        n, c = images.shape[:2]
        flat = images.reshape(n * c, 1, 28, 28)  # row n*C + k is channel k of image n
        device = next(self.net.parameters()).device
        feats = [self.net.features(chunk.to(device).contiguous(memory_format=torch.channels_last)).cpu()
                 for chunk in flat.split(self.batch_size)]
        return torch.cat(feats).reshape(n, -1) if feats else torch.zeros(0, 0)

    def classify(self, images: torch.Tensor) -> Classification:
        """(N, C, 28, 28) -> a `Classification` of the N images."""
        conf, digits = self.digit_probabilities(images).max(dim=2)   # (N, C) each
        return Classification(digits, conf)

    def predictability(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                       tolerance: float | None = None) -> Predictability:
        """Classify `images` and return the fraction classified with confidence >= tolerance
        (default 0.8 mono, 0.5 stacked) and, given labels (N,), the fraction both confident and
        right. To ask several questions of one set of images, call `classify` once instead."""
        result = self.classify(images)
        accuracy = result.accuracy(labels, tolerance) if labels is not None else None
        return Predictability(result.predictability(tolerance), accuracy)

    def coverage(self, images: torch.Tensor, tolerance: float | None = None) -> float:
        """Classify `images` and return the fraction of classes seen among confident ones."""
        return self.classify(images).coverage(tolerance)
