"""Where things live and how the workbook runs: data root, checkpoints, smoke mode, device,
seeds, random draws that honour a generator, and the one atomic file writer."""
from __future__ import annotations

import contextlib
import ctypes
import os
import random
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """Folder holding `MNIST/raw/...`: `$DGM_DATA_DIR`, else the project's `data/` cache."""
    env = os.environ.get("DGM_DATA_DIR")
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / "data"


def checkpoint_dir() -> Path:
    """Folder of shipped weights and `manifest.json`: `$DGM_CHECKPOINT_DIR`, else `checkpoints/`."""
    env = os.environ.get("DGM_CHECKPOINT_DIR")
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / "checkpoints"


def smoke_mode() -> bool:
    """True when `DGM_SMOKE=1`: training runs a couple of batches on a small subset."""
    return os.environ.get("DGM_SMOKE", "0").strip().lower() in {"1", "true", "yes"}


SMOKE_BANNER = "smoke run: two batches, numbers are not the shipped ones"


def smoke_banner() -> None:
    """Print the one-line smoke-run banner under DGM_SMOKE=1 (a notebook's setup cell calls it);
    nothing otherwise."""
    if smoke_mode():
        print(SMOKE_BANNER)


def device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(requested: torch.device | str | None = None) -> torch.device:
    """The torch.device to use: `device()` when `requested` is None, else `requested` after checking
    that this machine has it (a ValueError naming it otherwise, e.g. "cuda" without a GPU)."""
    if requested is None:
        return device()
    try:
        dev = torch.device(requested)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{requested!r} is not a device name (expected 'cpu' or 'cuda'): {exc}") from None
    if dev.type == "cuda" and (not torch.cuda.is_available()
                               or (dev.index is not None and dev.index >= torch.cuda.device_count())):
        raise ValueError(f"device {str(dev)!r} is not available on this machine (no such CUDA GPU); "
                         f"use 'cpu' or leave the device unset")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device 'mps' is not available on this machine; use 'cpu' or leave the device unset")
    if dev.type not in {"cpu", "cuda", "mps"}:
        raise ValueError(f"device {str(dev)!r} is not supported here; use 'cpu' or 'cuda'")
    return dev


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA). For a notebook's setup cell only: library
    functions never call it; they take a `torch.Generator` or run under `forked_rng`."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@contextlib.contextmanager
def forked_rng(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG (CPU and CUDA) seeded to `seed`, and give the caller
    its own RNG state back afterwards: training is reproducible without reseeding the caller."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _draw(fn, shape, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    source = generator.device if generator is not None else (device or "cpu")
    out = fn(tuple(shape), generator=generator, device=source, dtype=dtype or torch.get_default_dtype())
    return out.to(device) if device is not None else out


def randn(shape, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """Standard normal draws of `shape`, made on the generator's device (so a CPU generator
    works for CUDA tensors) and moved to `device`. Without a generator: the global RNG."""
    return _draw(torch.randn, shape, generator, device, dtype)


def rand(shape, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """Uniform [0, 1) draws of `shape`, like `randn`."""
    return _draw(torch.rand, shape, generator, device, dtype)


def atomic_write(path: Path | str, write: Callable) -> None:
    """Call write(binary file object) on a temporary file beside `path`, flush and fsync it, then
    rename it into place: an interrupted write never leaves a broken file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; shipped files are world-readable
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_tensors(source, what: str, remedy: str, error: type[Exception]):
    """torch.load(source, weights_only=True) onto the CPU; on any failure (truncated or corrupt
    bytes, or objects other than tensors and plain containers) an `error` naming `what` and
    `remedy`. torch's advice to retry with weights_only=False is never passed on: it would run
    pickled code."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).split("\n")[0][:200]
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "WeightsUnpickler" in str(exc):
            reason = "it holds objects other than tensors, which are never unpickled here"
        raise error(f"{what} cannot be read ({type(exc).__name__}: {reason}); {remedy}") from None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory in the process instead of returning every large
    block to the kernel. Without it, each large CPU activation (a batch of 2,000 decoded images is
    about 200 MB) is mapped, zeroed by the kernel and unmapped again at every layer: decoding then
    spends as much time in the kernel as in PyTorch (measured: 3.5 s user + 4.1 s system for 8,000
    decodes of the z = 100 VAE, against 3.5 s + 0.3 s with this). Called by the command line and the
    heavy notebooks' setup; `make` sets the same through MALLOC_* variables. Returns False where
    there is no glibc (macOS, Windows), where it changes nothing; safe to call more than once."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3          # mallopt parameter numbers from malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, (1 << 31) - 1))
