"""One training loop for every model: `fit`.

A model differs from another by its `loss_fn`, never by a copy of this loop.
`loss_fn(model, batch)` gets a tuple of tensors (one row slice of each data tensor)
and returns the scalar loss to minimise, or a dict with that loss under "loss" plus
other scalars to log (all are averaged per epoch into the history).
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from . import settings

Batch = tuple[torch.Tensor, ...]
LossFn = Callable[[nn.Module, Batch], "torch.Tensor | dict[str, torch.Tensor]"]
SMOKE_BATCHES = 2


class EarlyStopping:
    """Stop when the monitored value (lower is better) has not improved by more than
    `min_delta` for `patience` consecutive epochs. `step(value)` returns True to stop."""

    def __init__(self, patience: int = 3, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.best_epoch = -1
        self.bad_epochs = 0

    def step(self, value: float, epoch: int | None = None) -> bool:
        if not math.isfinite(value):
            self.bad_epochs += 1
        elif value < self.best - self.min_delta:
            self.best, self.bad_epochs = value, 0
            self.best_epoch = epoch if epoch is not None else self.best_epoch + 1
            return False
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]


@dataclass
class History:
    """Per-epoch records: {"epoch", "train_<key>", "val_<key>", "seconds"} for each logged key."""

    epochs: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    best_epoch: int | None = None

    def series(self, key: str) -> list[float]:
        """The values of one column, e.g. `series("val_loss")`."""
        return [e[key] for e in self.epochs if key in e]

    def last(self, key: str) -> float:
        return self.series(key)[-1]

    def to_dict(self) -> dict:
        return {"epochs": self.epochs, "stopped_early": self.stopped_early, "best_epoch": self.best_epoch}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(list(d["epochs"]), bool(d["stopped_early"]), d["best_epoch"])


def _as_loss_dict(out) -> dict[str, torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return {"loss": out}
    if isinstance(out, dict) and "loss" in out:
        return out
    raise TypeError("loss_fn must return a scalar tensor or a dict with a 'loss' entry")


def _check_data(data: Sequence[torch.Tensor], name: str) -> tuple[torch.Tensor, ...]:
    if isinstance(data, torch.Tensor):
        data = (data,)
    if not data or not all(isinstance(t, torch.Tensor) for t in data):
        raise TypeError(f"{name} must be a tensor or a tuple of tensors with equal first dimension")
    if len({len(t) for t in data}) != 1:
        raise ValueError(f"{name}: tensors differ in length: {[len(t) for t in data]}")
    return tuple(data)


def _batches(data: tuple[torch.Tensor, ...], batch_size: int, order: torch.Tensor | None,
             max_batches: int | None, device: torch.device):
    n = len(data[0])
    starts = range(0, n, batch_size)
    if max_batches is not None:
        starts = starts[:max_batches]
    for s in starts:
        idx = order[s:s + batch_size] if order is not None else slice(s, s + batch_size)
        yield tuple(t[idx].to(device, non_blocking=True) for t in data)


def evaluate(model: nn.Module, loss_fn: LossFn, data: Sequence[torch.Tensor], batch_size: int = 1000,
             max_batches: int | None = None) -> dict[str, float]:
    """Mean of every logged quantity of `loss_fn` over `data`, in eval mode without gradients."""
    data = _check_data(data, "data")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    count = 0
    with torch.no_grad():
        for batch in _batches(data, batch_size, None, max_batches, device):
            n = len(batch[0])
            for k, v in _as_loss_dict(loss_fn(model, batch)).items():
                sums[k] = sums.get(k, 0.0) + v.detach().float() * n
            count += n
    model.train(was_training)
    return {k: (v / count).item() for k, v in sums.items()}


def _save_resume_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, tmp)
    os.replace(tmp, path)


def fit(model: nn.Module, loss_fn: LossFn, train_data: Sequence[torch.Tensor],
        val_data: Sequence[torch.Tensor] | None = None, *, epochs: int = 10, batch_size: int = 128,
        optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
        scheduler: Callable[[torch.optim.Optimizer, int], object] | None = None,
        early_stopping: EarlyStopping | None = None, seed: int = 0,
        resume_path: Path | str | None = None, augment: Callable[[Batch, torch.Generator], Batch] | None = None,
        desc: str = "train", progress: bool = True) -> History:
    """Train `model` on whole-tensor batches of `train_data` and log per-epoch history.

    train_data / val_data: tuples of tensors sharing the first dimension (e.g. (images, labels)),
        held in memory; batches are row slices in a seeded random order (seed + epoch).
    optimizer: default Adam(lr). scheduler(optimizer, steps_per_epoch*epochs) -> an LR scheduler
        stepped once per batch.
    early_stopping: monitors val_loss (train_loss without val_data); the best weights are restored.
    resume_path: after each epoch the full training state is written there (atomically); a later
        call with the same path continues from the last finished epoch. Removed when done.
    augment(batch, generator) -> batch: applied to training batches only.
    Under `DGM_SMOKE=1`: one epoch of two batches (and two validation batches).
    Returns a `History`.
    """
    train_data = _check_data(train_data, "train_data")
    val_data = _check_data(val_data, "val_data") if val_data is not None else None
    if batch_size < 1 or epochs < 1:
        raise ValueError(f"batch_size and epochs must be >= 1, got {batch_size}, {epochs}")
    smoke = settings.smoke_mode()
    max_batches = SMOKE_BATCHES if smoke else None
    epochs = 1 if smoke else epochs
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(train_data[0]) / batch_size)
    sched = scheduler(optimizer, steps_per_epoch * epochs) if scheduler else None
    history = History()
    best_state = None
    start_epoch = 0

    resume_path = Path(resume_path) if resume_path else None
    if resume_path and resume_path.exists():
        state = torch.load(resume_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler"):
            sched.load_state_dict(state["scheduler"])
        if early_stopping is not None and state.get("early_stopping"):
            early_stopping.load_state_dict(state["early_stopping"])
        history = History.from_dict(state["history"])
        best_state = state.get("best_model")
        start_epoch = state["epoch"] + 1
        torch.set_rng_state(state["rng"])

    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        model.train()
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(train_data[0]), generator=g)
        sums: dict[str, torch.Tensor] = {}
        count = 0
        n_batches = min(steps_per_epoch, max_batches or steps_per_epoch)
        bar = tqdm(total=n_batches, desc=f"{desc} {epoch + 1}/{epochs}", leave=False, disable=not progress)
        for i, batch in enumerate(_batches(train_data, batch_size, order, max_batches, device)):
            if augment is not None:
                batch = augment(batch, g)
            logged = _as_loss_dict(loss_fn(model, batch))
            optimizer.zero_grad(set_to_none=True)
            logged["loss"].backward()
            optimizer.step()
            if sched is not None:
                sched.step()
            n = len(batch[0])
            for k, v in logged.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float() * n
            count += n
            bar.update(1)
            if i % 50 == 0:  # the only host sync inside the epoch, for the progress bar
                bar.set_postfix(loss=f"{logged['loss'].item():.4g}")
        bar.close()
        record = {"epoch": epoch + 1}
        record.update({f"train_{k}": (v / count).item() for k, v in sums.items()})
        if val_data is not None:
            val = evaluate(model, loss_fn, val_data, batch_size=max(batch_size, 500), max_batches=max_batches)
            record.update({f"val_{k}": v for k, v in val.items()})
        record["seconds"] = round(time.perf_counter() - t0, 2)
        history.epochs.append(record)
        if progress:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k.endswith("loss"))
            tqdm.write(f"{desc} epoch {epoch + 1}/{epochs}: {shown} ({record['seconds']:.0f} s)")

        stop = False
        if early_stopping is not None:
            monitored = record.get("val_loss", record["train_loss"])
            stop = early_stopping.step(monitored, epoch + 1)
            if early_stopping.best_epoch == epoch + 1:
                best_state = copy.deepcopy(model.state_dict())
        if resume_path:
            _save_resume_state(resume_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "early_stopping": early_stopping.state_dict() if early_stopping else None,
                "history": history.to_dict(), "best_model": best_state, "epoch": epoch,
                "rng": torch.get_rng_state()})
        if stop:
            history.stopped_early = True
            break

    if early_stopping is not None and best_state is not None:
        model.load_state_dict(best_state)
        history.best_epoch = early_stopping.best_epoch
    if resume_path and resume_path.exists():
        resume_path.unlink()
    model.eval()
    return history
