"""SVHN (IFT6135 Problem 3): (N, 3, 32, 32) float32 in [0, 1], labels 0..9, full SVHN or the
10,000-image sample, split by a seed into train / validation / held-out parts (`load_svhn`)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import settings
from .data import DatasetCorruptError, DatasetNotFoundError

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
            "with helpers.svhn_data.load_svhn(download=True)") from exc
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
            "them, or call helpers.svhn_data.load_svhn(download=True) with internet access")
    split = {k: len(v[0]) for k, v in parts.items()}
    parts = _smoke_cut(parts)
    if settings.smoke_mode():
        what += " (DGM_SMOKE=1: the first " + ", ".join(f"{len(parts[k][0])} {k}" for k in parts) + " images)"
    if verbose:
        print(f"SVHN: {what}")
    float_parts = {k: (xi.float().div_(255.0), yi.clone()) for k, (xi, yi) in parts.items()}
    return SVHNData(float_parts["train"], float_parts["val"], float_parts["test"], source, path, int(seed), split,
                    what)
