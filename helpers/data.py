"""MNIST and stackedMNIST in the eight data modes of IT3030 Assignment 2.

Images are (N, C, 28, 28) float32 tensors in [0, 1]; labels are int64 (N,).
Mono images have C = 1 and classes 0..9. Colour images ("stackedMNIST") stack
three MNIST digits as the R, G and B channels (C = 3); the class of a stacked
image is R + 10 * G + 100 * B, one of 1000.

SVHN is read by `svhn_data`, directories of PNG images by `png`.
"""
from __future__ import annotations

import enum
import functools
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from . import settings

IMAGE_SIZE = 28
MISSING_DIGIT = 8
SMOKE_TRAIN, SMOKE_TEST = 512, 300       # a smoke test set still splits into halves of more than 128 (FID)


class DatasetNotFoundError(RuntimeError):
    """The dataset is not on disk and could not be downloaded."""


class DatasetCorruptError(RuntimeError):
    """A dataset file is on disk but unreadable, of the wrong layout, or fails its checksum."""


class DataMode(enum.Enum):
    """Which images: MONO (1 channel) or COLOR (stackedMNIST, 3 channels); BINARY
    (thresholded at 0.5) or FLOAT ([0, 1] grey values); COMPLETE, or MISSING (every
    training image containing an 8, in any channel, removed; test data keeps them)."""

    MONO_BINARY_COMPLETE = (False, True, False)
    MONO_BINARY_MISSING = (False, True, True)
    MONO_FLOAT_COMPLETE = (False, False, False)
    MONO_FLOAT_MISSING = (False, False, True)
    COLOR_BINARY_COMPLETE = (True, True, False)
    COLOR_BINARY_MISSING = (True, True, True)
    COLOR_FLOAT_COMPLETE = (True, False, False)
    COLOR_FLOAT_MISSING = (True, False, True)

    @property
    def color(self) -> bool:
        return self.value[0]

    @property
    def binary(self) -> bool:
        return self.value[1]

    @property
    def missing(self) -> bool:
        return self.value[2]

    @property
    def channels(self) -> int:
        return 3 if self.color else 1

    @property
    def n_classes(self) -> int:
        return 1000 if self.color else 10

    @classmethod
    def of(cls, *, color: bool, binary: bool, missing: bool) -> "DataMode":
        """The mode with these three properties."""
        return cls((bool(color), bool(binary), bool(missing)))

    @classmethod
    def parse(cls, mode: "DataMode | str") -> "DataMode":
        """A `DataMode`, or its name in any case (e.g. "mono_binary_complete")."""
        if isinstance(mode, cls):
            return mode
        if isinstance(mode, str) and mode.strip().upper() in cls.__members__:
            return cls[mode.strip().upper()]
        names = ", ".join(cls.__members__)
        raise ValueError(f"unknown data mode {mode!r}; expected a DataMode or one of: {names}")


def validate_images(images: torch.Tensor, channels: tuple[int, ...] = (1, 3),
                    size: int = IMAGE_SIZE, name: str = "images") -> torch.Tensor:
    """Check that `images` is a float tensor (N, C, size, size) in [0, 1] with C in `channels`.

    NaN and inf are refused, and so are other float types (float64: convert with .float()).
    Returns the tensor unchanged; raises TypeError/ValueError saying what was expected.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, {size}, {size}), "
                        f"got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a float32 tensor with values in [0, 1], got dtype "
                        f"{images.dtype} (divide uint8 images by 255)")
    if images.dtype != torch.float32:
        raise TypeError(f"{name} must be float32 (the models' weights are float32), got {images.dtype}; "
                        f"convert with images.float()")
    if images.dim() != 4 or images.shape[1] not in channels or images.shape[2:] != (size, size):
        want = " or ".join(f"(N, {c}, {size}, {size})" for c in channels)
        raise ValueError(f"{name} must have shape {want}, got {tuple(images.shape)}")
    if images.numel() and not torch.isfinite(images).all():
        bad = (~torch.isfinite(images)).flatten(1).any(1).sum().item()
        raise ValueError(f"{name} hold NaN or infinite values (in {bad} of {len(images)} images)")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"{name} must have values in [0, 1], got range "
                         f"[{images.min().item():.3g}, {images.max().item():.3g}]")
    return images


def binarize(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> same shape with values in {0., 1.} (pixel >= threshold)."""
    return (images >= threshold).to(images.dtype if images.is_floating_point() else torch.float32)


def stochastic_binarize(images: torch.Tensor, seed: int) -> torch.Tensor:
    """(N, C, H, W) grey values in [0, 1] -> {0, 1}: each pixel on with probability equal to its
    grey value, drawn once from `seed` (the same seed gives the same binary images)."""
    validate_images(images, size=images.shape[-1] if images.dim() == 4 else IMAGE_SIZE)
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(images.shape, generator=g) < images.cpu()).to(images.dtype)


def binarized_mnist(seed: int = 0) -> dict[str, torch.Tensor]:
    """A fixed stochastic binarisation of MNIST drawn once from `seed`: {"train": first 50,000
    training images, "val": last 10,000, "test": the 10,000 test images}, each (N, 1, 28, 28)
    in {0, 1}. Training and test images use different streams of the seed."""
    x, _ = MNISTData(DataMode.MONO_FLOAT_COMPLETE, seed=seed).get_full_data_set(training=True)
    x_test, _ = MNISTData(DataMode.MONO_FLOAT_COMPLETE, seed=seed).get_full_data_set(training=False)
    (train,), (val,) = split_validation(stochastic_binarize(x, seed=2 * seed), n_val=10_000)
    return {"train": train, "val": val, "test": stochastic_binarize(x_test, seed=2 * seed + 1)}


MNIST_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
               False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000)}


def check_mnist_md5(root: Path | str, train: bool) -> None:
    """When `root`/MNIST/raw/MD5SUMS lists a file of this split (lines "md5  path", the path
    relative to `root` or a bare name), the file's md5 must match it: DatasetCorruptError otherwise."""
    import hashlib
    raw = Path(root) / "MNIST" / "raw"
    sums = raw / "MD5SUMS"
    if not sums.is_file():
        return
    expected = {}
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            expected[Path(parts[-1].lstrip("*")).name] = parts[0].lower()
    for name in MNIST_FILES[bool(train)][:2]:
        path = raw / name
        if name not in expected or not path.is_file():
            continue
        h = hashlib.md5()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != expected[name]:
            raise DatasetCorruptError(f"{path} is corrupt: md5 {h.hexdigest()} does not match {sums}'s "
                                      f"{expected[name]}; copy the file again")


def check_mnist_arrays(images: torch.Tensor, labels: torch.Tensor, train: bool, where: Path | str) -> None:
    """Shape and label sanity of a split as read: uint8 images (N, 28, 28) and labels 0..9, N =
    60,000 (train) or 10,000 (test); DatasetCorruptError naming `where` otherwise."""
    n = MNIST_FILES[bool(train)][2]
    if tuple(images.shape) != (n, IMAGE_SIZE, IMAGE_SIZE) or images.dtype != torch.uint8:
        raise DatasetCorruptError(f"MNIST under {where} has images {images.dtype} {tuple(images.shape)}, expected "
                                  f"uint8 ({n}, 28, 28); copy the files again")
    if tuple(labels.shape) != (n,) or (n and (int(labels.min()) < 0 or int(labels.max()) > 9)):
        raise DatasetCorruptError(f"MNIST under {where} has labels of shape {tuple(labels.shape)} in "
                                  f"[{int(labels.min())}, {int(labels.max())}], expected ({n},) in 0..9; "
                                  f"copy the files again")


@functools.lru_cache(maxsize=4)
def _load_mnist_cached(root: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    import torchvision  # imported here: slow to import and only needed for the files

    raw = Path(root) / "MNIST" / "raw"
    check_mnist_md5(root, train)
    try:
        ds = torchvision.datasets.MNIST(root, train=train, download=False)
    except RuntimeError as missing:
        if "not found" not in str(missing).lower():
            raise DatasetCorruptError(f"MNIST under {raw} cannot be read ({missing}); copy the files "
                                      f"again") from None
        try:  # only the download is guarded: a corrupt file on disk raises its own error
            ds = torchvision.datasets.MNIST(root, train=train, download=True)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError; torchvision wraps mirror failures
            raise DatasetNotFoundError(
                f"MNIST not found under {raw} and download failed: {exc}. "
                "Point the environment variable DGM_DATA_DIR at a folder that holds MNIST/raw/ "
                "in torchvision's layout, or connect to the internet so it can be downloaded."
            ) from exc
    except (ValueError, IndexError, OSError) as exc:     # a truncated idx file
        raise DatasetCorruptError(f"MNIST under {raw} cannot be read ({type(exc).__name__}: {exc}); copy the "
                                  f"files again") from None
    check_mnist_arrays(ds.data, ds.targets, train, raw)
    return ds.data, ds.targets


def load_mnist(train: bool = True, root: Path | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw MNIST from `root` (default `settings.data_root()`), downloaded if absent.

    Returns uint8 images (N, 28, 28) and int64 labels (N,): N = 60,000 (train) or 10,000 (test),
    fresh copies: a caller's in-place edit cannot reach the files' in-process cache.
    """
    root = Path(root) if root is not None else settings.data_root()
    images, labels = _load_mnist_cached(str(root), bool(train))
    return images.clone(), labels.clone()


def stack_digits(images: torch.Tensor, labels: torch.Tensor, n: int, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Build `n` stackedMNIST images from mono digits, deterministically from `seed`.

    images: (M, 28, 28) uint8, labels: (M,). Returns (n, 3, 28, 28) uint8 whose channels
    R, G, B are three digits drawn uniformly with replacement, and labels R + 10 G + 100 B.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    picks = np.random.default_rng(seed).integers(0, len(images), size=(n, 3))
    picks = torch.from_numpy(picks)
    stacked = images[picks]  # (n, 3, 28, 28)
    stacked_labels = labels[picks] @ torch.tensor([1, 10, 100])
    return stacked, stacked_labels


def split_validation(*tensors: torch.Tensor, n_val: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """The last `n_val` rows of each tensor as validation, the rest as training:
    ((train rows of each), (validation rows of each)). Under `DGM_SMOKE=1` the data are small
    subsets, so n_val shrinks to a sixth of them: the one place smoke mode changes a split."""
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"tensors differ in length: {[len(t) for t in tensors]}")
    if settings.smoke_mode():
        n_val = min(n_val, n // 6)
    if not 0 < n_val < n:
        raise ValueError(f"n_val must be between 1 and {n - 1} for {n} rows, got {n_val}")
    return tuple(t[:-n_val] for t in tensors), tuple(t[-n_val:] for t in tensors)


def contains_digit(labels: torch.Tensor, digit: int, color: bool) -> torch.Tensor:
    """Bool (N,): does a label (mono 0..9, or stacked 0..999) contain `digit` in any channel?"""
    if not color:
        return labels == digit
    return ((labels % 10) == digit) | ((labels // 10 % 10) == digit) | ((labels // 100) == digit)


class MNISTData:
    """MNIST or stackedMNIST in one `DataMode`, as tensors, a batch generator or a DataLoader.

    n_train / n_test: number of images before MISSING filtering (stacked: how many to
    build, default 60,000 / 10,000; mono: the first n of MNIST, default all). Under
    `DGM_SMOKE=1` the defaults shrink to small subsets. Stacked training images use
    MNIST training digits, stacked test images MNIST test digits, drawn from `seed`.
    """

    def __init__(self, mode: DataMode | str = DataMode.MONO_BINARY_COMPLETE, seed: int = 0,
                 n_train: int | None = None, n_test: int | None = None,
                 root: Path | str | None = None):
        self.mode = DataMode.parse(mode)
        self.seed = int(seed)
        smoke = settings.smoke_mode()
        self.n_train = n_train if n_train is not None else (SMOKE_TRAIN if smoke else 60_000)
        self.n_test = n_test if n_test is not None else (SMOKE_TEST if smoke else 10_000)
        self.root = root

    @property
    def channels(self) -> int:
        return self.mode.channels

    @property
    def n_classes(self) -> int:
        return self.mode.n_classes

    def raw(self, training: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (N, C, 28, 28) and labels (N,) of this mode, before BINARY/FLOAT: the
        caller's own tensors (editing them in place changes nothing for anyone else)."""
        images, labels = load_mnist(train=training, root=self.root)
        n = self.n_train if training else self.n_test
        if self.mode.color:
            # train and test draw from different seeds so they are not the same index pattern
            stacked, stacked_labels = stack_digits(images, labels, n, seed=self.seed * 2 + int(not training))
            images, labels = stacked, stacked_labels
        else:
            images, labels = images[:n].unsqueeze(1), labels[:n]
        if training and self.mode.missing:
            keep = ~contains_digit(labels, MISSING_DIGIT, self.mode.color)
            images, labels = images[keep], labels[keep]
        return images, labels

    def get_full_data_set(self, training: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """All images (N, C, 28, 28) float32 in [0, 1] (binary modes: {0, 1}) and labels (N,),
        built afresh on each call (nothing is shared with other callers)."""
        images, labels = self.raw(bool(training))
        x = images.float().div_(255.0)
        return (binarize(x) if self.mode.binary else x), labels

    def batch_generator(self, training: bool = True, batch_size: int = 256, shuffle: bool = True,
                        seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images (B, C, 28, 28), labels (B,)) batches covering the data once."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        x, y = self.get_full_data_set(training)
        if shuffle:
            g = torch.Generator().manual_seed(self.seed if seed is None else seed)
            order = torch.randperm(len(x), generator=g)
        else:
            order = torch.arange(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]

    def dataset(self, training: bool = True) -> TensorDataset:
        """A torch `TensorDataset` of (image (C, 28, 28), label) pairs."""
        return TensorDataset(*self.get_full_data_set(training))

    def loader(self, training: bool = True, batch_size: int = 256, shuffle: bool | None = None) -> DataLoader:
        """A torch `DataLoader` over `dataset(training)`; shuffles training data by default."""
        shuffle = training if shuffle is None else shuffle
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.dataset(training), batch_size=batch_size, shuffle=shuffle, generator=g)

    def __repr__(self) -> str:
        return f"MNISTData({self.mode.name}, seed={self.seed}, n_train={self.n_train}, n_test={self.n_test})"
