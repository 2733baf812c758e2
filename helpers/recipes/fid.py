"""FID as the workbook computes it (IFT6135 Problem 3, notebook 11): the feature networks (the
verification net for MNIST, the SVHN classifier for SVHN), the test sets, `FIDReference` (test
features computed once, many sets scored against them) and the `python -m helpers fid` command's
functions; and the SVHN data and classifier loaders they need. The distance itself is
`helpers.frechet`; the SVHN classifier's recipe is in `svhn`."""
from __future__ import annotations

import time
from typing import NamedTuple

import torch
from torch import nn

from .. import checkpoints, settings
from ..data import DataMode, MNISTData
from ..nets import DigitClassifier
from .registry import VERIFIER, load_verifier

SVHN_CLASSIFIER = "svhn_classifier"
FID_SAMPLES = 1000           # IFT6135 Problem 3 scores 1,000 samples of each model
FID_SEED = 0                 # torch.Generator seed of the scored samples
FID_DATASETS = ("mnist", "mnist-binary", "svhn")


def svhn_classifier_net(width: int = 32) -> DigitClassifier:
    """The SVHN classifier: `DigitClassifier` on (N, 3, 32, 32) colour images, 10 digits, 128 features."""
    return DigitClassifier(width=width, channels=3, image_size=32)


def load_svhn_data(verbose: bool = True):
    """`svhn_data.load_svhn()` with the workbook's split (seed `svhn_data.SVHN_SPLIT_SEED`)."""
    from ..svhn_data import load_svhn
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


class FIDReference:
    """The reference side of a FID computed once, to score many sets of images against: the
    features (`fid_feature_extractor`) of a dataset's test images (`fid_test_images`, the first
    `test_samples`), or of other reference `images` of that dataset described as `what` (e.g. a
    validation part). `score(images)` -> FID of images (N, C, S, S) in [0, 1];
    `features_of(images)` -> (N, 128) features; `test_features` (n_reference, 128)."""

    def __init__(self, dataset: str = "mnist", test_samples: int | None = None,
                 device: torch.device | str | None = None, images: torch.Tensor | None = None,
                 what: str = "given reference images"):
        self.dataset = dataset
        self.channels, self.size = _fid_image_shape(dataset)
        self.extract, _, _, self.description = fid_feature_extractor(dataset, device)
        if images is None:
            self.images, self.test_set = fid_test_images(dataset, test_samples)
        else:
            self.images, self.test_set = self.check(images, "reference images"), what
        start = time.perf_counter()
        self.test_features = self.features_of(self.images)
        self.seconds_test_features = time.perf_counter() - start

    def check(self, images: torch.Tensor, name: str = "samples") -> torch.Tensor:
        """images, after checking they are this dataset's shape, in [0, 1] and finite."""
        from ..data import validate_images
        validate_images(images, channels=(self.channels,), size=self.size, name=f"{self.dataset} {name}")
        return images

    def features_of(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) -> (N, 128) features on the CPU, in batches of 500."""
        from ..frechet import feature_batches
        return torch.cat(list(feature_batches(self.extract, images)))

    def score(self, images: torch.Tensor) -> float:
        """FID of the images (N, C, S, S) in [0, 1] against the test features; N must exceed 128."""
        from ..frechet import calculate_fid_score
        return calculate_fid_score([self.features_of(self.check(images))], [self.test_features])

    def result(self, images: torch.Tensor) -> FIDResult:
        """`score` with what it was computed on and its timings."""
        from ..frechet import calculate_fid_score
        start = time.perf_counter()
        features = self.features_of(self.check(images))
        middle = time.perf_counter()
        fid = calculate_fid_score([features], [self.test_features])
        return FIDResult(fid, self.dataset, len(images), len(self.images), self.description, self.test_set,
                         round(middle - start, 3), round(time.perf_counter() - middle, 3))


def fid_against_test_sets(image_sets, dataset: str = "mnist", test_samples: int | None = None,
                          device: torch.device | str | None = None) -> list[FIDResult]:
    """FID of each set of images (N, C, S, S) in [0, 1] against the test images of `dataset`
    (`fid_test_images`, the first `test_samples` of them), on the dataset's classifier features
    (`fid_feature_extractor`). The test features are computed once (the first result's
    seconds_features includes them); every set is checked before any feature is computed."""
    if not image_sets:
        raise ValueError("name at least one set of samples")
    channels, size = _fid_image_shape(dataset)
    from ..data import validate_images
    for images in image_sets:
        validate_images(images, channels=(channels,), size=size, name=f"{dataset} samples")
    reference = FIDReference(dataset, test_samples, device)
    results = [reference.result(images) for images in image_sets]
    first = results[0]
    results[0] = first._replace(seconds_features=round(first.seconds_features + reference.seconds_test_features, 3))
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
    from ..png import read_png_directory
    if not directories:
        raise ValueError("name at least one directory of samples")
    channels, size = _fid_image_shape(dataset)
    return fid_against_test_sets([read_png_directory(d, channels, size) for d in directories], dataset,
                                 test_samples, device)


def svhn_sample_fid(model) -> dict:
    """FID of FID_SAMPLES samples of a generator (from torch.Generator().manual_seed(FID_SEED))
    against the held-out SVHN part, when the svhn_classifier checkpoint exists (None otherwise).
    Under DGM_SMOKE=1: 256 samples."""
    from ..metrics import draw_samples
    if not checkpoints.exists(SVHN_CLASSIFIER):
        return {"fid": None, "fid_note": f"no {SVHN_CLASSIFIER} checkpoint to compute FID with"}
    n = 256 if settings.smoke_mode() else FID_SAMPLES
    samples = draw_samples(model, n, torch.Generator().manual_seed(FID_SEED))
    result = fid_against_test(samples, "svhn", device=model.device)
    return {"fid": round(result.fid, 4), "fid_samples": n, "fid_test_images": result.n_test, "fid_seed": FID_SEED,
            "fid_features": result.features}
