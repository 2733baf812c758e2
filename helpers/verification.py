"""The verification classifier: judges generated images by what a good MNIST CNN sees in them.

One CNN (`nets.DigitClassifier`) trained on mono MNIST is applied to each channel of a
3-channel image; the stacked class is R + 10 G + 100 B and its confidence is the product
of the three per-channel confidences.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .data import validate_images

CHECKPOINT = "verification_net"
DEFAULT_TOLERANCE = {1: 0.8, 3: 0.5}  # the assignment's tolerances for mono and stacked images
_PLACE_VALUES = torch.tensor([1, 10, 100])
CACHE_SIZE = 6  # image sets whose classification a Verifier remembers


class Predictability(NamedTuple):
    predictability: float          # fraction of images classified with confidence >= tolerance
    accuracy: float | None         # fraction also classified as their label (None without labels)


class ModeCount(NamedTuple):
    modes: int                     # distinct classes among confident predictions
    kl_to_uniform: float           # KL(class histogram || uniform over all classes), nats
    n_confident: int               # how many images were classified confidently


OUTLIER = -1  # label of a noise image in a training batch (see `add_noise_outliers`)


def classification_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
                        outlier_weight: float = 0.5) -> dict[str, torch.Tensor]:
    """Cross-entropy of logits on (images (B, 1, 28, 28), labels (B,)); also logs accuracy.

    Rows labelled `OUTLIER` are noise images: their loss is the cross-entropy to the uniform
    distribution over digits, as KL(uniform || softmax) ("outlier exposure"), which teaches the
    net to be unsure of them.
    """
    images, labels = batch
    logits = model(images)
    digit = labels != OUTLIER
    loss = F.cross_entropy(logits[digit], labels[digit])
    if not digit.all():
        # KL(uniform || softmax): zero when the net is completely unsure of a noise image
        kl_uniform = -F.log_softmax(logits[~digit], dim=1).mean(1) - math.log(logits.shape[1])
        loss = loss + outlier_weight * kl_uniform.mean()
    return {"loss": loss, "accuracy": (logits[digit].argmax(1) == labels[digit]).float().mean()}


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


class Verifier:
    """Classifies mono (N, 1, 28, 28) or stacked (N, 3, 28, 28) images in [0, 1] with one CNN."""

    def __init__(self, net: nn.Module, batch_size: int = 512):
        # channels_last runs these convolutions about 1.5x faster on CPU (measured)
        self.net = net.eval().to(memory_format=torch.channels_last)
        self.batch_size = batch_size  # moderate: huge batches spend their time allocating activations
        self._recent: list[tuple] = []   # (images, images._version, result) of recent classify calls

    @classmethod
    def load(cls, device: torch.device | str | None = None) -> "Verifier":
        """The verifier on the shipped `verification_net` checkpoint."""
        from . import checkpoints
        return cls(checkpoints.load(CHECKPOINT, device=device))

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

    def classify(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, 28, 28) -> (labels (N,) in 0..10**C-1, confidence (N,) = product over channels).

        Results for the last few tensors are kept, so asking predictability, coverage and the
        histogram of one set of images classifies it once (an in-place change invalidates it)."""
        for cached, version, result in self._recent:
            if cached is images and version == images._version:
                return result
        probs = self.digit_probabilities(images)
        conf, digit = probs.max(dim=2)                       # (N, C) each
        labels = (digit * _PLACE_VALUES[: probs.shape[1]]).sum(1)
        result = (labels, conf.prod(dim=1))
        self._recent = [(images, images._version, result)] + self._recent[:CACHE_SIZE - 1]
        return result

    @staticmethod
    def n_classes(images: torch.Tensor) -> int:
        return 10 ** images.shape[1]

    def _confident(self, images, tolerance):
        validate_images(images)
        tolerance = _check_tolerance(DEFAULT_TOLERANCE[images.shape[1]] if tolerance is None else tolerance)
        labels, conf = self.classify(images)
        return labels, conf >= tolerance

    def predictability(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                       tolerance: float | None = None) -> Predictability:
        """Fraction of images classified with confidence >= tolerance (default 0.8 mono, 0.5
        stacked) and, given labels (N,), the fraction both confident and right."""
        predicted, confident = self._confident(images, tolerance)
        if len(predicted) == 0:
            raise ValueError("images is empty; need at least one image")
        accuracy = None
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.shape != predicted.shape:
                raise ValueError(f"labels must be a tensor of shape ({len(predicted)},), got "
                                 f"{tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}")
            accuracy = (confident & (predicted == labels.cpu())).float().mean().item()
        return Predictability(confident.float().mean().item(), accuracy)

    def class_histogram(self, images: torch.Tensor, tolerance: float | None = None) -> torch.Tensor:
        """(n_classes,) int64 counts of the confidently predicted classes (10 or 1000 classes)."""
        predicted, confident = self._confident(images, tolerance)
        return torch.bincount(predicted[confident], minlength=self.n_classes(images))

    def coverage(self, images: torch.Tensor, tolerance: float | None = None) -> float:
        """Fraction of the 10 (or 1000) classes seen among confidently classified images."""
        counts = self.class_histogram(images, tolerance)
        return (counts > 0).float().mean().item()

    def mode_count(self, images: torch.Tensor, tolerance: float | None = None) -> ModeCount:
        """Distinct classes, KL of the class histogram to uniform, and confident count."""
        counts = self.class_histogram(images, tolerance)
        return ModeCount(int((counts > 0).sum()), kl_to_uniform(counts), int(counts.sum()))


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
