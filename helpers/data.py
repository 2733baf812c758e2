"""MNIST and stackedMNIST in the eight data modes of IT3030 Assignment 2.

Images are (N, C, 28, 28) float32 tensors in [0, 1]; labels are int64 (N,).
Mono images have C = 1 and classes 0..9. Colour images ("stackedMNIST") stack
three MNIST digits as the R, G and B channels (C = 3); the class of a stacked
image is R + 10 * G + 100 * B, one of 1000.

SVHN (`load_svhn`): (N, 3, 32, 32) float32 in [0, 1], labels 0..9, full SVHN or the 10,000-image
sample, split by a seed into train / validation / held-out parts. Directories of PNG images are
written and read by `write_png_directory` and `read_png_directory` (e.g. samples to score with FID).
"""
from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
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


# --- SVHN (IFT6135 Problem 3) --------------------------------------------------------------------
# Images are (N, 3, 32, 32) float32 in [0, 1], labels int64 (N,) with 0..9 (SVHN's label 10 is the
# digit 0). Two sources, the first that is on disk under the data root:
#   full:   <root>/SVHN/train_32x32.mat and test_32x32.mat, read by torchvision.datasets.SVHN (which
#           checks their md5; `load_svhn(download=True)` fetches them for a user with internet);
#   sample: <root>/SVHN-sample/test_32x32.mat, the first 10,000 SVHN *test* images in the official
#           layout, read with scipy.io.loadmat (torchvision refuses its md5, see its README).
# What is at hand is split once, by a seeded permutation, into train / validation / held-out parts:
#   sample: 70 / 10 / 20 % -> 7,000 / 1,000 / 2,000 images. The held-out 2,000 are the FID test set;
#           2,000 is about 16 times the 128 feature dimensions of the FID classifier;
#   full:   the official training set minus SVHN_FULL_VAL seeded validation images / those images /
#           the official test set (26,032 images).
# Under DGM_SMOKE=1 each part is cut to its first SMOKE_SVHN[part] images (subsets of the real split).

SVHN_DIR = "SVHN"
SVHN_SAMPLE_FILE = Path("SVHN-sample") / "test_32x32.mat"
SVHN_SPLIT_SEED = 0
SVHN_SAMPLE_FRACTIONS = {"val": 0.1, "test": 0.2}    # of the sample; the rest (70 %) is the train part
SVHN_FULL_VAL = 5000
SMOKE_SVHN = {"train": 512, "val": 128, "test": 300}


class DatasetCorruptError(RuntimeError):
    """A dataset file is on disk but unreadable, of the wrong layout, or fails its checksum."""


def svhn_arrays_from_mat(mat: dict, path: Path | str = "<mat>") -> tuple[torch.Tensor, torch.Tensor]:
    """SVHN's .mat layout {"X": uint8 (32, 32, 3, N), "y": (N, 1) labels 1..10, 10 = digit 0} ->
    uint8 images (N, 3, 32, 32) and int64 labels (N,) in 0..9. DatasetCorruptError naming `path`
    when a key, the shape, the dtype or a label is not SVHN's."""
    if "X" not in mat or "y" not in mat:
        raise DatasetCorruptError(f"{path} has no 'X' and 'y' arrays (found keys "
                                  f"{sorted(k for k in mat if not k.startswith('__'))}); expected SVHN's "
                                  "format: X uint8 (32, 32, 3, N), y (N, 1) with labels 1..10")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DatasetCorruptError(f"{path}: X must be uint8 of shape (32, 32, 3, N), got {x.dtype} {x.shape}")
    n = x.shape[3]
    if y.size != n or (y.ndim == 2 and 1 not in y.shape) or y.ndim > 2:
        raise DatasetCorruptError(f"{path}: y must hold one label per image, shape ({n}, 1), got {y.shape}")
    labels = y.reshape(-1).astype(np.int64)
    if n and (labels.min() < 1 or labels.max() > 10):
        raise DatasetCorruptError(f"{path}: labels must be 1..10 (10 means the digit 0), got range "
                                  f"[{labels.min()}, {labels.max()}]")
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))   # (N, C, H, W)
    return images, torch.from_numpy(labels % 10)


def _check_sha256(path: Path) -> None:
    """If a SHA256SUMS file beside `path` lists it, the file's sha256 must match (DatasetCorruptError)."""
    import hashlib
    sums = path.parent / "SHA256SUMS"
    if not sums.is_file():
        return
    expected = {line.split()[-1].lstrip("*"): line.split()[0] for line in sums.read_text().splitlines()
                if len(line.split()) >= 2}
    if path.name not in expected:
        return
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != expected[path.name]:
        raise DatasetCorruptError(f"{path} is corrupt: sha256 {h.hexdigest()[:12]}... does not match "
                                  f"{sums}'s {expected[path.name][:12]}...; copy it again")


@functools.lru_cache(maxsize=2)
def _read_svhn_mat(path: str, stamp: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    from scipy.io import loadmat  # imported here: only this loader needs it
    _check_sha256(Path(path))
    try:
        mat = loadmat(path)
    except Exception as exc:  # scipy raises ValueError, MatReadError, OSError, ... on a broken file
        raise DatasetCorruptError(f"{path} cannot be read as a MATLAB file ({type(exc).__name__}: {exc}); "
                                  "expected SVHN's test_32x32.mat") from exc
    return svhn_arrays_from_mat(mat, path)


@functools.lru_cache(maxsize=2)
def _read_svhn_full(root: str, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    import torchvision
    try:
        ds = torchvision.datasets.SVHN(root, split=split, download=download)
    except RuntimeError as exc:
        raise DatasetCorruptError(
            f"{Path(root) / f'{split}_32x32.mat'} is on disk but torchvision rejects it ({exc}): its md5 is "
            "not the official file's. Delete it (the SVHN sample is used without it) or download it again "
            "with helpers.data.load_svhn(download=True)") from exc
    except OSError as exc:   # a failed download (URLError is an OSError)
        raise DatasetNotFoundError(f"SVHN could not be downloaded into {root}: {exc}") from exc
    return torch.from_numpy(ds.data), torch.from_numpy(ds.labels).long()


def _stamp(path: Path) -> tuple:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class SVHNData:
    """SVHN split into parts, each (images (N, 3, 32, 32) float32 in [0, 1], labels (N,) int64 0..9).

    source: "full" (torchvision's SVHN) or "sample" (the 10,000-image SVHN-sample); path: the file(s)
    read; split: the parts' sizes in the seeded split (before any DGM_SMOKE=1 cut); description: one
    sentence saying which and how it was split (printed by `load_svhn`)."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    source: str
    path: str
    seed: int
    split: dict
    description: str

    def part(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One part by name: "train", "val" or "test"."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"SVHN parts are 'train', 'val' and 'test', got {name!r}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {name: len(self.part(name)[0]) for name in ("train", "val", "test")}


def svhn_split_sizes(n: int) -> dict[str, int]:
    """Sizes of the sample's train / val / test parts for n images (10,000 -> 7,000 / 1,000 / 2,000)."""
    n_val, n_test = (round(SVHN_SAMPLE_FRACTIONS[k] * n) for k in ("val", "test"))
    if n - n_val - n_test < 1 or n_val < 1 or n_test < 1:
        raise ValueError(f"{n} SVHN images are too few to split into train / val / test parts")
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def _smoke_cut(parts: dict) -> dict:
    if not settings.smoke_mode():
        return parts
    return {k: (x[:SMOKE_SVHN[k]], y[:SMOKE_SVHN[k]]) for k, (x, y) in parts.items()}


def load_svhn(root: Path | str | None = None, seed: int = SVHN_SPLIT_SEED, download: bool = False,
              verbose: bool = True) -> SVHNData:
    """SVHN from `root` (default `settings.data_root()`), split into train / val / test parts.

    Full SVHN (torchvision's files in <root>/SVHN/) when both are on disk, or with `download=True`
    (a user with internet); otherwise the sample <root>/SVHN-sample/test_32x32.mat, read with
    scipy.io.loadmat. The sample is split 70 / 10 / 20 % (7,000 / 1,000 / 2,000 images) by a
    permutation from `seed`; full SVHN keeps its test set as the held-out part and takes
    SVHN_FULL_VAL seeded validation images out of its training set. Prints which source it used
    (verbose) and says it in `.source` / `.description`. DatasetNotFoundError when neither is there;
    DatasetCorruptError when a file is there but unreadable or fails its checksum.
    """
    root = Path(root) if root is not None else settings.data_root()
    full_dir, sample = root / SVHN_DIR, root / SVHN_SAMPLE_FILE
    g = torch.Generator().manual_seed(int(seed))
    have_full = all((full_dir / f"{s}_32x32.mat").is_file() for s in ("train", "test"))
    if have_full or download:
        x, y = _read_svhn_full(str(full_dir), "train", bool(download))
        x_test, y_test = _read_svhn_full(str(full_dir), "test", bool(download))
        order = torch.randperm(len(x), generator=g)
        val, train = order[:SVHN_FULL_VAL], order[SVHN_FULL_VAL:]
        parts = {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x_test, y_test)}
        source, path = "full", str(full_dir)
        what = (f"full SVHN from {SVHN_DIR} in the data root (torchvision): {len(train):,} training images, {len(val):,} "
                f"validation images taken from the training set with seed {seed}, the {len(x_test):,} test images held out")
    elif sample.is_file():
        sums = sample.parent / "SHA256SUMS"
        x, y = _read_svhn_mat(str(sample), (_stamp(sample), _stamp(sums) if sums.is_file() else None))
        sizes = svhn_split_sizes(len(x))
        order = torch.randperm(len(x), generator=g)
        cuts = torch.split(order, [sizes["train"], sizes["val"], sizes["test"]])
        parts = {k: (x[idx], y[idx]) for k, idx in zip(("train", "val", "test"), cuts)}
        source, path = "sample", str(sample)
        what = (f"the SVHN sample {SVHN_SAMPLE_FILE} in the data root ({len(x):,} SVHN test images, not the full dataset), split with "
                f"seed {seed} into {sizes['train']:,} train / {sizes['val']:,} validation / {sizes['test']:,} "
                "held-out images")
    else:
        raise DatasetNotFoundError(
            f"SVHN not found: neither {full_dir / 'train_32x32.mat'} and {full_dir / 'test_32x32.mat'} (full "
            f"SVHN) nor {sample} (the 10,000-image sample) exists. Point DGM_DATA_DIR at a folder holding one of "
            "them, or call helpers.data.load_svhn(download=True) with internet access")
    split = {k: len(v[0]) for k, v in parts.items()}
    parts = _smoke_cut(parts)
    if settings.smoke_mode():
        what += " (DGM_SMOKE=1: the first " + ", ".join(f"{len(parts[k][0])} {k}" for k in parts) + " images)"
    if verbose:
        print(f"SVHN: {what}")
    float_parts = {k: (xi.float().div_(255.0), yi.clone()) for k, (xi, yi) in parts.items()}
    return SVHNData(float_parts["train"], float_parts["val"], float_parts["test"], source, path, int(seed), split,
                    what)


# --- directories of PNG images (samples for the FID command, as IFT6135's score_fid.py reads them) --

PNG_SUFFIX = ".png"


def _to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> (N, H, W, C) uint8, rounded to the nearest of 256 levels."""
    return (images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def write_png_directory(images: torch.Tensor, directory: Path | str, overwrite: bool = False) -> list[Path]:
    """Write images (N, C, S, S) in [0, 1] (C = 1 grey or 3 RGB) as 00000.png, 00001.png, ... into
    `directory`, atomically as a whole: they are written into a temporary folder beside it that is
    renamed into place, so an interrupted call leaves no half-filled directory. An existing
    non-empty `directory` is an error unless `overwrite` (then it is replaced). Returns the paths."""
    from PIL import Image
    import shutil
    import tempfile
    validate_images(images, channels=(1, 3), size=images.shape[-1] if images.dim() == 4 else IMAGE_SIZE)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        raise FileExistsError(f"{directory} is not empty; pass overwrite=True to replace it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        pixels = _to_uint8_hwc(images)
        width = max(5, len(str(len(pixels) - 1)))
        names = [f"{i:0{width}d}{PNG_SUFFIX}" for i in range(len(pixels))]
        for name, p in zip(names, pixels):
            Image.fromarray(np.ascontiguousarray(p[:, :, 0] if p.shape[2] == 1 else p)).save(tmp / name)
        tmp.chmod(0o755)
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{tmp.name}")
            directory.rename(old)
        tmp.rename(directory)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [directory / name for name in names]


def png_files(directory: Path | str) -> list[Path]:
    """The PNG files of `directory` and of its immediate subdirectories (IFT6135's score_fid.py
    reads `sample_directory/samples/*.png`), sorted; hidden files are skipped. Errors: a missing
    directory, one without PNGs, or any other file in it (a non-image file is a clear error, not
    something silently left out of the score)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no directory {directory}")
    files, others = [], []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        for f in (sorted(entry.iterdir()) if entry.is_dir() else [entry]):
            if f.name.startswith(".") or f.is_dir():
                continue
            (files if f.suffix.lower() == PNG_SUFFIX else others).append(f)
    if others:
        shown = ", ".join(str(f.relative_to(directory)) for f in others[:5])
        raise ValueError(f"{directory} holds files that are not PNG images: {shown}"
                         f"{' ...' if len(others) > 5 else ''}; it must hold only the samples as .png files")
    if not files:
        raise ValueError(f"{directory} holds no .png images (looked in it and its subdirectories)")
    return files


def read_png_directory(directory: Path | str, channels: int, size: int) -> torch.Tensor:
    """All PNGs of `directory` (`png_files`) as (N, channels, size, size) float32 in [0, 1].

    channels 1: grey images (PIL mode "L" or "1"; an RGB image whose three channels are equal, as
    torchvision's save_image writes grey images, is accepted as grey). channels 3: RGB images.
    A file that is not a readable PNG, of another size or of another colour mode is a ValueError
    naming the file and what was expected."""
    from PIL import Image, UnidentifiedImageError
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    want = f"{size}x{size} {'greyscale' if channels == 1 else 'RGB'}"
    arrays = []
    for f in png_files(directory):
        try:
            with Image.open(f) as img:
                img.load()
                mode, (w, h) = img.mode, img.size
                if img.format != "PNG":
                    raise ValueError(f"{f} is a {img.format} image, not a PNG")
                if (w, h) != (size, size):
                    raise ValueError(f"{f} is {w}x{h}, expected {want} images")
                if channels == 1 and mode in ("L", "1"):
                    a = np.asarray(img.convert("L"))[None]
                elif channels == 1 and mode == "RGB":
                    rgb = np.asarray(img)
                    if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
                        raise ValueError(f"{f} is a colour (RGB) image, expected {want} images")
                    a = rgb[..., 0][None]
                elif channels == 3 and mode == "RGB":
                    a = np.asarray(img).transpose(2, 0, 1)
                else:
                    raise ValueError(f"{f} has colour mode {mode!r}, expected {want} images")
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ValueError(f"{f} is not a readable PNG image ({exc})") from exc
        arrays.append(a)
    return torch.from_numpy(np.stack(arrays)).float().div_(255.0)
