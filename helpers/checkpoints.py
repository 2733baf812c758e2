"""Shipped weights: atomic saves, a manifest with sha256, and safe loading.

`checkpoints/manifest.json` maps a checkpoint name to
    {"file", "sha256", "config": {"class", "kwargs"}, "data_mode", "command",
     "metrics", "history", "versions", "trained_seconds", "saved"}.
Files hold a state_dict only and are loaded with `weights_only=True`. This module stores and
loads; how a checkpoint is trained lives in `recipes`.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import platform
from pathlib import Path

import torch
from torch import nn

from . import settings
from .models import ARCHITECTURES

MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit the architecture it claims."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(directory: Path | None = None) -> dict:
    """The manifest as a dict (empty when there is none yet)."""
    path = (directory or settings.checkpoint_dir()) / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); restore it with git checkout") from exc


def _write_manifest(manifest: dict, directory: Path) -> None:
    text = json.dumps(dict(sorted(manifest.items())), indent=2) + "\n"
    settings.atomic_write(directory / MANIFEST, lambda f: f.write(text.encode()))


@contextlib.contextmanager
def _manifest_lock(directory: Path):
    """Hold an exclusive lock on `<directory>/.manifest.lock` (POSIX `flock`; a no-op where fcntl
    is missing, e.g. Windows), so that two processes training or evaluating into the same directory
    cannot interleave their read-modify-write of the manifest and lose an entry."""
    try:
        import fcntl
    except ImportError:     # not POSIX: no lock
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".manifest.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_manifest(change, directory: Path | None = None) -> dict:
    """Read the manifest, apply `change(manifest)` (which edits the dict in place) and write it back
    atomically, all under the directory's manifest lock. Returns the manifest as written."""
    directory = directory or settings.checkpoint_dir()
    with _manifest_lock(directory):
        manifest = read_manifest(directory)
        change(manifest)
        _write_manifest(manifest, directory)
    return manifest


def library_versions() -> dict:
    import numpy
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    try:
        import torchvision
        versions["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return versions


def model_config(model: nn.Module) -> dict:
    """{"class": name, "kwargs": constructor arguments} of a model listed in
    `models.ARCHITECTURES` that keeps its constructor arguments in a `config` dict."""
    cls = type(model).__name__
    if ARCHITECTURES.get(cls) is not type(model) or not hasattr(model, "config"):
        raise TypeError(f"{cls} is not an architecture listed in helpers.models.ARCHITECTURES with a "
                        f"`config` attribute, so it cannot be rebuilt from a manifest")
    return {"class": cls, "kwargs": dict(model.config)}


def build_model(config: dict) -> nn.Module:
    """A fresh model from a manifest config {"class", "kwargs"} (classes in ARCHITECTURES only)."""
    if not isinstance(config, dict) or not isinstance(config.get("kwargs", {}), dict):
        raise CheckpointError(f"a manifest config must be {{'class': name, 'kwargs': {{...}}}}, got {config!r}")
    cls = ARCHITECTURES.get(config.get("class", ""))
    if cls is None:
        raise CheckpointError(f"unknown architecture {config.get('class')!r}; known: {sorted(ARCHITECTURES)}")
    try:
        return cls(**config.get("kwargs", {}))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the manifest's config {config} cannot build {cls.__name__}: {exc}; restore the "
                              f"manifest with git") from None


STORAGES = ("float32", "float16")
HALF_LIMIT = 60_000.0          # float16's largest finite value is 65,504


def _stored(tensor: torch.Tensor, storage: str) -> torch.Tensor:
    """A state_dict tensor as saved: floating-point tensors at half precision under "float16"
    when every value fits, everything else unchanged."""
    if storage == "float16" and tensor.is_floating_point() and tensor.numel() and tensor.abs().max() < HALF_LIMIT:
        return tensor.half()
    return tensor


@torch.no_grad()
def round_to_storage(model: nn.Module, storage: str) -> nn.Module:
    """Round the model's floating-point parameters and buffers in place to what `save` keeps under
    `storage`, so that metrics computed afterwards describe the stored weights. Returns the model."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.copy_(_stored(tensor, storage).to(tensor.dtype))
    return model


def save(name: str, model: nn.Module, *, metrics: dict | None = None, data_mode: str | None = None,
         command: str | None = None, history: dict | None = None, trained_seconds: float | None = None,
         directory: Path | None = None, storage: str = "float32") -> Path:
    """Write `model.state_dict()` to `<dir>/<name>.pt` atomically and record it in the manifest.
    storage "float16" stores the floating-point tensors at half precision (half the file; a tensor
    that float16 cannot hold, beyond +-60,000, stays float32); loading casts them back into the
    model's float32 parameters, so what the manifest's evaluations score is the stored weights."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    directory = directory or settings.checkpoint_dir()
    config = model_config(model)
    path = directory / f"{name}.pt"
    state = {k: _stored(v.detach().cpu(), storage) for k, v in model.state_dict().items()}
    settings.atomic_write(path, lambda f: torch.save(state, f))
    record = {
        "file": path.name, "sha256": sha256_of(path), "config": config, "data_mode": data_mode,
        "command": command or f"python -m helpers train {name}", "metrics": metrics or {}, "storage": storage,
        "history": history, "trained_seconds": trained_seconds, "versions": library_versions(),
        "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    def change(manifest: dict) -> None:
        old = manifest.get(name)
        if isinstance(old, dict):   # earlier evaluations stay, each with the sha256 of what it scored:
            for key in ("evaluation", "evaluations"):   # they are stale until re-run
                if old.get(key):
                    record[key] = old[key]
        manifest[name] = record

    update_manifest(change, directory)
    return path


def record_evaluation(name: str, evaluation: dict, directory: Path | None = None, part: str | None = None) -> None:
    """Store the results of a heavy evaluation of checkpoint `name` (numbers with their settings:
    sample counts, seeds, seconds, the command) under its manifest entry's "evaluation" key, or,
    for a named further evaluation `part`, under "evaluations"[part]; either leaves the other alone."""
    def change(manifest: dict) -> None:
        if name not in manifest:
            raise CheckpointError(f"no checkpoint named {name!r} to record an evaluation for")
        if part is None:
            manifest[name]["evaluation"] = dict(evaluation)
        else:
            manifest[name].setdefault("evaluations", {})[part] = dict(evaluation)

    update_manifest(change, directory)


def exists(name: str, directory: Path | None = None) -> bool:
    directory = directory or settings.checkpoint_dir()
    manifest = read_manifest(directory)
    if name not in manifest:
        return False
    return checkpoint_path(name, directory, manifest[name]).exists()


REQUIRED_KEYS = ("file", "sha256", "config")


def entry(name: str, directory: Path | None = None) -> dict:
    """The manifest entry of `name`; CheckpointError naming the known ones when absent, and when
    the entry is malformed (not a mapping, or without its file, sha256 or config)."""
    directory = directory or settings.checkpoint_dir()
    manifest = read_manifest(directory)
    if name not in manifest:
        raise CheckpointError(f"no checkpoint named {name!r} in {directory / MANIFEST} "
                              f"(known: {sorted(manifest) or 'none'}); train it with "
                              f"`python -m helpers train {name}`")
    meta = manifest[name]
    if not isinstance(meta, dict):
        raise CheckpointError(f"manifest entry {name!r} in {directory / MANIFEST} is "
                              f"{type(meta).__name__}, not a mapping; restore the manifest with git "
                              f"or retrain with `python -m helpers train {name}`")
    missing = [k for k in REQUIRED_KEYS if not meta.get(k)]
    if missing:
        raise CheckpointError(f"manifest entry {name!r} in {directory / MANIFEST} lacks {', '.join(missing)}; "
                              f"restore the manifest with git or retrain with `python -m helpers train {name}`")
    return meta


def checkpoint_path(name: str, directory: Path | None = None, meta: dict | None = None) -> Path:
    """The weights file of checkpoint `name`: the manifest's "file", which must be a plain file name
    inside the checkpoint folder (no folder part, no '..'); CheckpointError otherwise."""
    directory = directory or settings.checkpoint_dir()
    meta = meta if meta is not None else entry(name, directory)
    file = meta.get("file") if isinstance(meta, dict) else None
    if not isinstance(file, str) or not file or Path(file).name != file or file in {".", ".."}:
        raise CheckpointError(f"manifest entry {name!r} names the file {file!r}, which is not a plain file "
                              f"name inside {directory}; restore the manifest with git")
    return directory / file


def evaluation_key(name: str, part: str | None = None) -> str:
    return name if part is None else f"{name}:{part}"


def evaluation_status(name: str, part: str | None = None, directory: Path | None = None) -> str:
    """"current" when a stored evaluation of `name` (or its `part`) scored the weights the manifest
    names now (same sha256), "stale" when it scored other weights (the checkpoint was retrained
    since), "missing" when there is none."""
    meta = entry(name, directory)
    found = meta.get("evaluation") if part is None else (meta.get("evaluations") or {}).get(part)
    if not isinstance(found, dict):
        return "missing"
    return "current" if found.get("sha256") == meta["sha256"] else "stale"


def stored_evaluation(name: str, part: str | None = None, directory: Path | None = None) -> dict:
    """The stored heavy evaluation of checkpoint `name` (or its named `part`), when it scored the
    weights the manifest names now. A CheckpointError of one line naming the command that computes
    it when there is none, or when it is stale (it scored the weights of an earlier training)."""
    status = evaluation_status(name, part, directory)
    key = evaluation_key(name, part)
    if status == "missing":
        raise CheckpointError(f"checkpoint {name!r} has no stored evaluation {key!r}; compute it with "
                              f"`python -m helpers evaluate {key}`")
    meta = entry(name, directory)
    found = meta["evaluation"] if part is None else meta["evaluations"][part]
    if status == "stale":
        raise CheckpointError(f"the stored evaluation {key!r} scored earlier weights of {name!r} (sha256 "
                              f"{str(found.get('sha256'))[:12]}..., now {meta['sha256'][:12]}...); refresh it "
                              f"with `python -m helpers evaluate {key}`")
    return found


def load_verified(name: str, device: torch.device | str | None = None, directory: Path | None = None
                  ) -> tuple[nn.Module, str]:
    """(model, sha256): the ready model of checkpoint `name` and the sha256 of the very bytes its
    weights were read from (read once, hashed, checked against the manifest, then loaded), so an
    evaluation can name the weights it scored even if the file is replaced meanwhile."""
    directory = directory or settings.checkpoint_dir()
    meta = entry(name, directory)
    path = checkpoint_path(name, directory, meta)
    retrain = f"retrain it with `{meta.get('command') or f'python -m helpers train {name}'}`"
    if not path.exists():
        raise CheckpointError(f"checkpoint file {path} is missing; {retrain} or restore it with git")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        raise CheckpointError(f"checkpoint {path} is corrupt: sha256 {digest[:12]}... does not match "
                              f"the manifest's {str(meta['sha256'])[:12]}...; {retrain} or restore it with git")
    state = settings.load_tensors(io.BytesIO(data), f"checkpoint {path}", retrain, CheckpointError)
    model = build_model(meta["config"])
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit architecture {meta['config']}: {exc}") from exc
    return model.to(settings.resolve_device(device)).eval(), digest


def load(name: str, device: torch.device | str | None = None, directory: Path | None = None) -> nn.Module:
    """The ready model of checkpoint `name`: built from its config, weights verified and loaded,
    in eval mode, on `device` (default `settings.device()`)."""
    return load_verified(name, device, directory)[0]
