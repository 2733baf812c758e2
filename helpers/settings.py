"""Where things live and how the workbook runs: data root, checkpoints, smoke mode, device, seeds."""
from __future__ import annotations

import os
import random
from pathlib import Path

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


def device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a notebook run twice prints the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
