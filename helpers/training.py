"""One training loop for every model: `fit`.

A model differs from another by its loss or its step, never by a copy of this loop.

- One loss, one optimiser (AEs, VAEs, classifiers): `fit(model, loss_fn, train_data, val_data)`.
  `loss_fn(model, batch)` gets a tuple of tensors (one row slice of each data tensor) and returns
  the scalar loss to minimise, or a dict with that loss under "loss" plus other scalars to log.
- Several optimisers (GANs, critics): `fit(model, step=..., optimizers={...}, train_data=...)`.
  `step(model, batch, optimizers, iteration)` does its own backward passes and optimiser steps
  (e.g. a critic update every iteration and a generator update every 5th) and returns a dict of
  scalars to log (losses, D(x), D(G(z)), a Wasserstein estimate, ...).

Logged scalars are averaged per epoch into `History.epochs` ("train_<key>") and recorded every
`log_every` iterations into `History.steps`.
"""
from __future__ import annotations

import contextlib
import copy
import math
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
StepFn = Callable[[nn.Module, Batch, "dict[str, torch.optim.Optimizer]", int], "dict[str, torch.Tensor]"]
SMOKE_BATCHES = 2


class ResumeMismatchError(RuntimeError):
    """A resume file was written by a run with other settings."""


class ResumeError(RuntimeError):
    """A resume file cannot be read: truncated, corrupt, or not written by `fit`."""


class EarlyStopping:
    """Stop when the monitored value has not improved by more than `min_delta` for `patience`
    consecutive epochs. mode "min": lower is better (a loss); "max": higher is better.
    `step(value, epoch)` returns True to stop; `best_epoch` is the epoch of the best value
    (counted from 1 by the calls to `step` when no epoch is passed)."""

    def __init__(self, patience: int = 3, min_delta: float = 0.0, monitor: str = "val_loss", mode: str = "min"):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.patience, self.min_delta, self.monitor, self.mode = patience, min_delta, monitor, mode
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.calls = 0

    def _improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def step(self, value: float, epoch: int | None = None) -> bool:
        self.calls += 1
        if self._improves(value):
            self.best, self.bad_epochs = value, 0
            self.best_epoch = epoch if epoch is not None else self.calls
            return False
        self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs, "calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
        self.calls = state.get("calls", 0)


@dataclass
class History:
    """Per-epoch records {"epoch", "train_<key>", "val_<key>", ..., "seconds"} and per-step
    records {"step", <key>: value} every `log_every` iterations."""

    epochs: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    best_epoch: int | None = None
    steps: list[dict] = field(default_factory=list)

    def series(self, key: str) -> list[float]:
        """The values of one per-epoch column, e.g. `series("val_loss")`."""
        return [e[key] for e in self.epochs if key in e]

    def last(self, key: str) -> float:
        return self.series(key)[-1]

    def to_dict(self) -> dict:
        return {"epochs": self.epochs, "stopped_early": self.stopped_early, "best_epoch": self.best_epoch,
                "steps": self.steps}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(list(d["epochs"]), bool(d["stopped_early"]), d["best_epoch"], list(d.get("steps", [])))


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


def _device_of(model: nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def evaluate(model: nn.Module, loss_fn: LossFn, data: Sequence[torch.Tensor], batch_size: int = 1000,
             max_batches: int | None = None) -> dict[str, float]:
    """Mean of every logged quantity of `loss_fn` over `data`, in eval mode without gradients."""
    data = _check_data(data, "data")
    device = _device_of(model)
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


def train_mode(model: nn.Module) -> None:
    """`model.train()`, except that every submodule whose parameters are all frozen
    (requires_grad False) stays in eval mode: a frozen decoder's batch-norm statistics and
    dropout do not move while something else (e.g. per-image posterior parameters) is fitted."""
    model.train()
    for module in model.modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()


def loss_step(loss_fn: LossFn, name: str = "model") -> StepFn:
    """The step of the single-loss case: loss_fn, backward, one step of optimizers[name]."""
    def step(model, batch, optimizers, iteration):
        logged = _as_loss_dict(loss_fn(model, batch))
        opt = optimizers[name]
        opt.zero_grad(set_to_none=True)
        logged["loss"].backward()
        opt.step()
        return logged
    return step


def _describe(opt: torch.optim.Optimizer) -> str:
    defaults = {k: v for k, v in sorted(opt.defaults.items()) if isinstance(v, (int, float, str, bool, tuple))}
    return f"{type(opt).__name__}{defaults}"


def _fingerprint(model, optimizers, epochs, batch_size, seed, n_train, extra) -> dict[str, str]:
    fp = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "n_train": n_train,
          "model": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
          "optimizers": {k: _describe(o) for k, o in sorted(optimizers.items())}}
    fp.update(extra or {})
    return {k: repr(v) for k, v in fp.items()}


def _rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if torch.cuda.is_available() and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def read_resume_state(path: Path | str) -> dict:
    """The state a run wrote to `path` after its last finished epoch (see `fit`). A truncated,
    corrupt or foreign file is refused with a ResumeError that names it and how to discard it."""
    path = Path(path)
    remedy = f"delete it (rm {path}) to train afresh"
    state = settings.load_tensors(path, f"the resume file {path}", remedy, ResumeError)
    needed = ("model", "optimizers", "history", "epoch", "rng", "fingerprint")
    if not isinstance(state, dict) or any(k not in state for k in needed):
        raise ResumeError(f"the resume file {path} is not a training state written by fit; {remedy}")
    return state


def read_resume_seconds(path: Path | str | None) -> float:
    """The seconds of the finished epochs recorded in the resume file at `path` (0 when there is
    none): the training time that earlier processes spent on a run that resumes from it."""
    if path is None or not Path(path).exists():
        return 0.0
    history = read_resume_state(path)["history"]
    return float(sum(e.get("seconds", 0.0) for e in history.get("epochs", [])))


def fit(model: nn.Module, loss_fn: LossFn | None = None, train_data: Sequence[torch.Tensor] | None = None,
        val_data: Sequence[torch.Tensor] | None = None, *, epochs: int = 10, batch_size: int = 128,
        optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
        scheduler=None, early_stopping: EarlyStopping | None = None, seed: int = 0,
        resume_path: Path | str | None = None, augment: Callable[[Batch, torch.Generator], Batch] | None = None,
        desc: str = "train", progress: bool | str = True, step: StepFn | None = None,
        optimizers: dict[str, torch.optim.Optimizer] | None = None,
        validate: Callable[[nn.Module], dict[str, float]] | None = None,
        fingerprint: dict | None = None, log_every: int = 50, autocast: str | None = None) -> History:
    """Train `model` on whole-tensor batches of `train_data` and log its history.

    train_data / val_data: tuples of tensors sharing the first dimension (e.g. (images, labels)),
        held in memory; batches are row slices in a seeded random order (seed + epoch). A model
        with `check_batch(data)` has its data checked once here, not in every step.
    loss_fn, optimizer (default Adam(lr)): the single-loss case. Or `step` with a dict of
        `optimizers` (see the module docstring). scheduler: a factory
        (optimizer, total_steps) -> LR scheduler, or a dict of them by optimizer name; stepped
        once per batch.
    validate(model) -> {name: float}: called in eval mode after each epoch; its values join the
        epoch's record (with val_data and loss_fn, the "val_<key>" means are recorded too).
    early_stopping: monitors its `monitor` key of the epoch record (val_loss falls back to
        train_loss without validation); the best epoch's weights are restored at the end.
    resume_path: after each epoch the full state is written there atomically: model, every
        optimiser and scheduler, early stopping, history, the RNG states (CPU and CUDA) and a
        fingerprint of the settings (epochs, batch size, seed, data size, optimisers, plus the
        caller's `fingerprint` dict). A later call continues from the last finished epoch and
        ends with the same parameters as an uninterrupted run; a file written under other
        settings is refused with ResumeMismatchError. The file is removed when training ends.
    Frozen parts: submodules whose parameters all have requires_grad False stay in eval mode
        (`train_mode`), so their batch-norm statistics do not drift.
    RNG: training runs under `settings.forked_rng(seed)`; the caller's global RNG is untouched.
    progress: True, a bar per epoch and a line of its record; "epochs", one bar over all epochs
        (for many short epochs, e.g. one optimisation step each); False, silent.
    autocast: None (float32) or "bf16": every training step runs under torch.autocast with
        bfloat16 (weights, optimiser state and the recorded values stay float32). On a CPU with
        avx512_bf16 it makes the GAN steps 1.6-1.7 times faster and the small VAE step no faster
        (benchmarks/training_throughput.py); it is part of the resume fingerprint.
    Under `DGM_SMOKE=1`: one epoch of two batches (and two validation batches).
    Returns a `History`.
    """
    if (loss_fn is None) == (step is None):
        raise TypeError("pass either loss_fn (one loss, one optimiser) or step with optimizers")
    if step is not None and not optimizers:
        raise TypeError("a step function needs a dict of optimizers")
    if step is not None and optimizer is not None:
        raise TypeError("with a step function, pass optimizers={name: optimiser}, not optimizer")
    if train_data is None:
        raise TypeError("train_data is required")
    train_data = _check_data(train_data, "train_data")
    val_data = _check_data(val_data, "val_data") if val_data is not None else None
    if val_data is not None and loss_fn is None:
        raise TypeError("val_data is scored with loss_fn; with a step function use validate=")
    if batch_size < 1 or epochs < 1:
        raise ValueError(f"batch_size and epochs must be >= 1, got {batch_size}, {epochs}")
    if autocast not in (None, "bf16"):
        raise ValueError(f"autocast must be None or 'bf16', got {autocast!r}")
    if hasattr(model, "check_batch"):
        model.check_batch(train_data)
        if val_data is not None:
            model.check_batch(val_data)

    smoke = settings.smoke_mode()
    max_batches = SMOKE_BATCHES if smoke else None
    epochs = 1 if smoke else epochs
    device = _device_of(model)
    if step is None:
        optimizers = {"model": optimizer or torch.optim.Adam(model.parameters(), lr=lr)}
        step = loss_step(loss_fn)
    steps_per_epoch = math.ceil(len(train_data[0]) / batch_size)
    factories = scheduler if isinstance(scheduler, dict) else ({name: scheduler for name in optimizers} if scheduler else {})
    unknown = set(factories) - set(optimizers)
    if unknown:
        raise ValueError(f"schedulers for unknown optimisers {sorted(unknown)}; optimisers: {sorted(optimizers)}")
    schedulers = {name: f(optimizers[name], steps_per_epoch * epochs) for name, f in factories.items()}
    fp = _fingerprint(model, optimizers, epochs, batch_size, seed, len(train_data[0]),
                      {**(fingerprint or {}), **({"autocast": autocast} if autocast else {})})
    precision = ((lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if autocast == "bf16"
                 else contextlib.nullcontext)

    with settings.forked_rng(seed):
        history, best_state, start_epoch = History(), None, 0
        resume_path = Path(resume_path) if resume_path else None
        if resume_path and resume_path.exists():
            state = read_resume_state(resume_path)
            old = state.get("fingerprint", {})
            for key in sorted(set(fp) | set(old)):
                if old.get(key) != fp.get(key):
                    raise ResumeMismatchError(
                        f"{resume_path} was written by a run with {key} = {old.get(key)}, but this run has "
                        f"{key} = {fp.get(key)}; delete {resume_path} to train afresh, or restore the setting "
                        f"to continue that run")
            model.load_state_dict(state["model"])
            for name, opt in optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
            for name, sched in schedulers.items():
                sched.load_state_dict(state["schedulers"][name])
            if early_stopping is not None and state.get("early_stopping"):
                early_stopping.load_state_dict(state["early_stopping"])
            history = History.from_dict(state["history"])
            best_state = state.get("best_model")
            start_epoch = state["epoch"] + 1
            _set_rng_state(state["rng"])
            if progress:
                tqdm.write(f"resuming {desc} from epoch {start_epoch + 1} of {epochs} ({start_epoch} finished, state in "
                           f"{resume_path})")

        iteration = start_epoch * steps_per_epoch
        per_epoch = progress is True
        overall = tqdm(total=epochs, initial=start_epoch, desc=desc, leave=False, disable=progress != "epochs")
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            train_mode(model)
            g = torch.Generator().manual_seed(seed * 100_003 + epoch)
            order = torch.randperm(len(train_data[0]), generator=g)
            sums: dict[str, torch.Tensor] = {}
            count = 0
            n_batches = min(steps_per_epoch, max_batches or steps_per_epoch)
            bar = tqdm(total=n_batches, desc=f"{desc} {epoch + 1}/{epochs}", leave=False, disable=not per_epoch)
            for i, batch in enumerate(_batches(train_data, batch_size, order, max_batches, device)):
                if augment is not None:
                    batch = augment(batch, g)
                with precision():
                    logged = step(model, batch, optimizers, iteration)
                for sched in schedulers.values():
                    sched.step()
                n = len(batch[0])
                for k, v in logged.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().float() * n
                count += n
                bar.update(1)
                if i % log_every == 0:  # the only host syncs inside the epoch
                    values = {k: float(v.detach()) for k, v in logged.items()}
                    history.steps.append({"step": iteration + 1, **values})
                    first = next(iter(values))
                    bar.set_postfix({first: f"{values[first]:.4g}"})
                iteration += 1
            bar.close()
            record = {"epoch": epoch + 1}
            record.update({f"train_{k}": (v / count).item() for k, v in sums.items()})
            if val_data is not None:
                val = evaluate(model, loss_fn, val_data, batch_size=max(batch_size, 500), max_batches=max_batches)
                record.update({f"val_{k}": v for k, v in val.items()})
            if validate is not None:
                model.eval()
                record.update({k: float(v) for k, v in validate(model).items()})
            record["seconds"] = round(time.perf_counter() - t0, 2)
            history.epochs.append(record)
            if per_epoch:
                shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds"))
                tqdm.write(f"{desc} epoch {epoch + 1}/{epochs}: {shown} ({record['seconds']:.0f} s)")
            overall.update(1)

            stop = False
            if early_stopping is not None:
                key = early_stopping.monitor
                if key not in record and key == "val_loss":
                    key = "train_loss"
                if key not in record:
                    raise KeyError(f"early stopping monitors {early_stopping.monitor!r}, not among the "
                                   f"epoch's records {sorted(record)}")
                stop = early_stopping.step(record[key], epoch + 1)
                if early_stopping.best_epoch == epoch + 1:
                    best_state = copy.deepcopy(model.state_dict())
            if resume_path:
                state = {"model": model.state_dict(), "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                         "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
                         "early_stopping": early_stopping.state_dict() if early_stopping else None,
                         "history": history.to_dict(), "best_model": best_state, "epoch": epoch,
                         "rng": _rng_state(), "fingerprint": fp}
                settings.atomic_write(resume_path, lambda f: torch.save(state, f))
            if stop:
                history.stopped_early = True
                break
        overall.close()

    if early_stopping is not None and best_state is not None:
        model.load_state_dict(best_state)
        history.best_epoch = early_stopping.best_epoch
    if resume_path and resume_path.exists():
        resume_path.unlink()
    model.eval()
    return history
