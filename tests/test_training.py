import pytest
import torch
from torch import nn

from helpers.training import EarlyStopping, History, evaluate, fit


def toy_problem(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.01 * torch.randn(n, 1, generator=g)
    return x, y


def mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def make_model():
    torch.manual_seed(1)
    return nn.Linear(4, 1)


def test_fit_learns_and_logs_history():
    x, y = toy_problem()
    model = make_model()
    h = fit(model, mse, (x, y), (x[:64], y[:64]), epochs=15, batch_size=32, lr=0.05, progress=False)
    assert [e["epoch"] for e in h.epochs] == list(range(1, 16))
    assert h.series("train_loss")[-1] < 0.01 * h.series("train_loss")[0]
    assert {"train_loss", "val_loss", "seconds"} <= set(h.epochs[-1])
    assert evaluate(model, mse, (x, y))["loss"] < 0.01


def test_dict_losses_are_averaged_per_epoch():
    x, y = toy_problem()
    h = fit(make_model(), lambda m, b: {"loss": mse(m, b), "half": 0.5 * mse(m, b)}, (x, y),
            epochs=2, batch_size=256, progress=False)
    assert h.last("train_half") == pytest.approx(0.5 * h.last("train_loss"))


def test_fit_is_seeded():
    x, y = toy_problem()
    a, b = make_model(), make_model()
    fit(a, mse, (x, y), epochs=3, batch_size=16, seed=5, progress=False)
    fit(b, mse, (x, y), epochs=3, batch_size=16, seed=5, progress=False)
    assert torch.equal(a.weight, b.weight)


def test_interrupted_training_resumes_where_it_stopped(tmp_path):
    x, y = toy_problem()
    reference = make_model()
    fit(reference, mse, (x, y), epochs=4, batch_size=16, seed=2, progress=False)

    calls = {"n": 0}

    def crashes_in_epoch_3(model, batch):
        calls["n"] += 1
        if calls["n"] == 2 * 16 + 5:
            raise KeyboardInterrupt
        return mse(model, batch)

    model = make_model()
    resume = tmp_path / "state.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(model, crashes_in_epoch_3, (x, y), epochs=4, batch_size=16, seed=2, resume_path=resume, progress=False)
    assert resume.exists()
    resumed = make_model()  # a new process would start from fresh weights
    h = fit(resumed, mse, (x, y), epochs=4, batch_size=16, seed=2, resume_path=resume, progress=False)
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3, 4]
    assert torch.allclose(resumed.weight, reference.weight, atol=1e-6)
    assert not resume.exists()


def test_early_stopping_on_synthetic_curves():
    stopper = EarlyStopping(patience=3)
    curve = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1]
    stops = [stopper.step(v, i + 1) for i, v in enumerate(curve)]
    assert stops == [False, False, False, False, False, True]
    assert stopper.best == 3.0 and stopper.best_epoch == 3
    flat = EarlyStopping(patience=2, min_delta=0.1)
    assert [flat.step(v) for v in (1.0, 0.95, 0.93)] == [False, False, True]
    nan = EarlyStopping(patience=1)
    assert nan.step(float("nan")) is True and nan.best_epoch is None
    with pytest.raises(ValueError):
        EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="lowest")


def test_best_epoch_counts_epochs_not_improvements():
    stopper = EarlyStopping(patience=5)
    for v in (5.0, 6.0, 7.0, 4.0, 4.5):          # improvements at calls 1 and 4
        stopper.step(v)
    assert stopper.best_epoch == 4


def test_early_stopping_can_maximise_a_named_record():
    stopper = EarlyStopping(patience=2, monitor="val_elbo", mode="max")
    assert [stopper.step(v) for v in (-100.0, -99.0, -99.5, -99.2)] == [False, False, False, True]
    assert stopper.best == -99.0 and stopper.best_epoch == 2


def test_early_stopping_on_a_missing_record_is_a_clear_error():
    x, y = toy_problem()
    with pytest.raises(KeyError, match="monitors 'val_acc'"):
        fit(make_model(), mse, (x, y), epochs=2, early_stopping=EarlyStopping(monitor="val_acc"), progress=False)


def test_early_stopping_restores_the_best_weights():
    x, y = toy_problem()
    model = make_model()
    # validation targets the model cannot fit: val loss gets worse as training fits train
    h = fit(model, mse, (x, y), (x, -y), epochs=20, batch_size=32, lr=0.05,
            early_stopping=EarlyStopping(patience=2), progress=False)
    assert h.stopped_early and h.best_epoch == 1 and len(h.epochs) == 3
    assert evaluate(model, mse, (x, -y))["loss"] == pytest.approx(h.epochs[0]["val_loss"], rel=1e-5)


def test_smoke_mode_runs_two_batches(smoke):
    x, y = toy_problem()
    seen = []
    fit(make_model(), lambda m, b: (seen.append(len(b[0])), mse(m, b))[1], (x, y),
        epochs=10, batch_size=8, progress=False)
    assert seen == [8, 8]


def test_bad_inputs_are_clear_errors():
    x, y = toy_problem()
    with pytest.raises(ValueError, match="differ in length"):
        fit(make_model(), mse, (x, y[:10]), progress=False)
    with pytest.raises(TypeError, match="'loss'"):
        fit(make_model(), lambda m, b: {"nope": mse(m, b)}, (x, y), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        fit(make_model(), mse, (x, y), batch_size=0, progress=False)


def test_history_round_trips():
    h = History([{"epoch": 1, "train_loss": 1.0}], True, 1, [{"step": 1, "loss": 2.0}])
    assert History.from_dict(h.to_dict()) == h


def test_fit_leaves_the_callers_rng_alone():
    x, y = toy_problem()
    model = make_model()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    fit(model, mse, (x, y), epochs=2, batch_size=64, progress=False)
    assert torch.equal(torch.get_rng_state(), state)

