"""The registry of recipes and evaluations: `train(name)` runs a checkpoint's recipe through
`training.fit` and saves it with `checkpoints.save`; `load_or_train(name, retrain)` is what a
notebook calls; `evaluate(name)` runs a registered heavy evaluation once and stores it with the
sha256 of the weights it scored; `stored_evaluation(name)` is how a notebook reads it back.
Training resumes from `checkpoints/.resume/NAME.pt` after an interruption."""
from __future__ import annotations

import time
from typing import Callable, NamedTuple

import torch
from torch import nn

from .. import checkpoints, settings
from ..training import EarlyStopping
from ..verification import Verifier

VERIFIER = "verification_net"


class Trained(NamedTuple):
    model: nn.Module
    metrics: dict
    history: dict
    data_mode: str
    storage: str = "float32"      # "float16": saved at half precision (`checkpoints.save`)


RECIPES: dict[str, Callable[[torch.device, "object"], Trained]] = {}


def recipe(name: str):
    def add(fn):
        RECIPES[name] = fn
        return fn
    return add


def resume_path(name: str):
    return settings.checkpoint_dir() / ".resume" / f"{name}.pt"


def train(name: str, device: torch.device | str | None = None, evaluate_after: bool = False) -> nn.Module:
    """Train checkpoint `name` from its recipe and save it (not under DGM_SMOKE=1). Returns the model.
    The checkpoint's stored evaluations stay in the manifest, stale (they scored other weights),
    until `evaluate` runs again; with `evaluate_after` every evaluation registered for the
    checkpoint runs right after the save (`python -m helpers train` does this by default).
    `trained_seconds` counts every process of a resumed run, read from the resume state."""
    if name not in RECIPES:
        raise ValueError(f"no recipe named {name!r}; known: {sorted(RECIPES)}")
    device = settings.resolve_device(device)
    start = time.perf_counter()
    resume = None if settings.smoke_mode() else resume_path(name)  # a smoke run leaves no state to resume
    earlier = resumed_seconds(resume)
    with settings.forked_rng(0):  # model initialisation is seeded; the caller's RNG is left alone
        result = RECIPES[name](device, resume)
    seconds = round(earlier + time.perf_counter() - start, 1)
    if not settings.smoke_mode():
        checkpoints.save(name, result.model, metrics=result.metrics, data_mode=result.data_mode,
                         history=result.history, trained_seconds=seconds, storage=result.storage,
                         command=f"python -m helpers train {name}")
        if evaluate_after:
            for key in evaluations_of(name):
                evaluate(key, device=device)
    return result.model.eval()


def resumed_seconds(resume) -> float:
    """Seconds of training that earlier processes spent on a run that resumes from `resume` (0 when
    there is no resume state): the sum of its finished epochs' times, read from its history."""
    from ..training import read_resume_seconds
    return read_resume_seconds(resume) if resume is not None else 0.0


def load_or_train(name: str, retrain: bool = False, device: torch.device | str | None = None) -> nn.Module:
    """Load checkpoint `name`, or train it from its recipe (and save it) when `retrain` is true or
    it does not exist yet. Under `DGM_SMOKE=1` retraining is a couple of batches and is not saved
    over the shipped weights."""
    if not retrain and checkpoints.exists(name):
        return checkpoints.load(name, device)
    return train(name, device=device)


EVALUATIONS: dict[str, Callable[[nn.Module], dict]] = {}


def evaluation(name: str, part: str | None = None):
    """Register the heavy evaluation of checkpoint `name` (run once by `evaluate`). A checkpoint
    can have further named evaluations: `part="x"` registers "name:x", stored beside the main one
    (`checkpoints.record_evaluation(name, ..., part="x")`) without touching it."""
    if part is not None and (not part or ":" in part):
        raise ValueError(f"an evaluation part must be a non-empty name without ':', got {part!r}")
    key = name if part is None else f"{name}:{part}"
    def add(fn):
        EVALUATIONS[key] = fn
        return fn
    return add


def evaluations_of(name: str) -> list[str]:
    """The registered evaluation keys of checkpoint `name`: "name" and every "name:part"."""
    return sorted(k for k in EVALUATIONS if k == name or k.startswith(name + ":"))


def evaluate(name: str, device: torch.device | str | None = None) -> dict:
    """Run the registered heavy evaluation `name` ("checkpoint" or "checkpoint:part") on the
    checkpoint's shipped weights and store the numbers with their settings in the manifest
    (`checkpoints.record_evaluation`; a part beside the main evaluation), with the sha256 of the
    weights file as it was read when the evaluation started; under `DGM_SMOKE=1` it runs on the
    small subsets and stores nothing. Returns the numbers."""
    if name not in EVALUATIONS:
        raise ValueError(f"no evaluation for {name!r}; known: {sorted(EVALUATIONS)}")
    checkpoint, _, part = name.partition(":")
    model, digest = checkpoints.load_verified(checkpoint, device)
    start = time.perf_counter()
    result = EVALUATIONS[name](model)
    result.update(seconds=round(time.perf_counter() - start, 1), command=f"python -m helpers evaluate {name}",
                  sha256=digest)
    if not settings.smoke_mode():
        checkpoints.record_evaluation(checkpoint, result, part=part or None)
    return result


_SMOKE_EVALUATIONS: dict[tuple[str, str, str], dict] = {}


def stored_evaluation(name: str, part: str | None = None) -> dict:
    """What a notebook reads: the stored evaluation of checkpoint `name` (or its `part`) when it
    scored the current weights; a CheckpointError of one line naming the command that refreshes it
    when it is missing or stale. Under DGM_SMOKE=1 the evaluation is recomputed on the smoke
    subsets instead (once per process, not stored), so that a notebook's retraining path runs end
    to end on data and numbers of one size."""
    if not settings.smoke_mode():
        return checkpoints.stored_evaluation(name, part)
    key = checkpoints.evaluation_key(name, part)
    cache = (str(settings.checkpoint_dir()), key, checkpoints.entry(name)["sha256"])   # new weights: recompute
    if cache not in _SMOKE_EVALUATIONS:
        _SMOKE_EVALUATIONS[cache] = evaluate(key)
    return _SMOKE_EVALUATIONS[cache]


def load_verifier(device: torch.device | str | None = None) -> Verifier:
    """The verifier on the shipped `verification_net` checkpoint."""
    return Verifier(checkpoints.load(VERIFIER, device=device))


def _rounded(metrics: dict, digits: int) -> dict:
    """Round the numbers of a metrics dict; leave None and other values as they are."""
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in metrics.items()}


def one_cycle(max_lr: float):
    """A scheduler factory for `fit`: one-cycle learning rate over all training steps."""
    return lambda opt, total_steps: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total_steps)



def smoke_count(n: int) -> int:
    """A stored evaluation's size, or a small one under DGM_SMOKE=1."""
    return min(n, 256) if settings.smoke_mode() else n


def value_summary(values: torch.Tensor, live: int) -> dict:
    """Mean, its standard error, the spread over images and the mean of the first `live` values."""
    v = values.double()
    return {"mean": round(v.mean().item(), 4), "se": round((v.std() / len(v) ** 0.5).item(), 4),
            "sd": round(v.std().item(), 4), "live_mean": round(v[:live].mean().item(), 4)}


LIKELIHOOD_EPOCH_CAP = 60   # an upper bound only: the stopping criterion ends every run before it


def likelihood_stopping() -> EarlyStopping:
    """The stopping criterion of notebooks 04, 07 and the SVHN VAEs: stop when the validation
    -ELBO has not improved by 0.1 nats for 3 epochs; the best epoch's weights are kept."""
    return EarlyStopping(patience=3, min_delta=0.1)
