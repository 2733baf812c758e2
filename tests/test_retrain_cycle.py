"""Retraining keeps a checkpoint's stored evaluations but marks them stale until they are run
again; an evaluation records the sha256 of the weights it loaded; resuming says so and the
training time of every process is counted."""
import pytest
import torch

from helpers import checkpoints, recipes
from helpers.__main__ import main
from helpers.checkpoints import CheckpointError
from helpers.models import VAE
from helpers.recipes import registry
from helpers.training import fit, read_resume_seconds


@pytest.fixture
def tiny_recipe(ckpt_dir, monkeypatch):
    """A registered recipe "tiny" (a VAE of 4 latent units whose weights depend on a counter, so
    each training gives new weights) with a main evaluation and a part "extra"."""
    runs = {"n": 0}

    def _tiny(device, resume):
        runs["n"] += 1
        model = VAE(channels=1, latent_dim=4, width=4)
        with torch.no_grad():
            next(model.parameters()).add_(runs["n"])
        return recipes.Trained(model.eval(), {"run": runs["n"]}, {"epochs": []}, "MONO_BINARY_COMPLETE")

    # registered in the shared tables for this test only (monkeypatch removes them afterwards)
    monkeypatch.setitem(registry.RECIPES, "tiny", _tiny)
    monkeypatch.setitem(registry.EVALUATIONS, "tiny",
                        lambda model: {"first_weight": round(next(model.parameters()).flatten()[0].item(), 4)})
    monkeypatch.setitem(registry.EVALUATIONS, "tiny:extra", lambda model: {"latent": model.latent_dim})
    assert recipes.RECIPES is registry.RECIPES
    return runs


def test_a_retrain_marks_the_evaluations_stale_and_evaluate_refreshes_them(tiny_recipe):
    recipes.train("tiny")
    assert checkpoints.evaluation_status("tiny") == "missing"
    with pytest.raises(CheckpointError, match="no stored evaluation 'tiny'; compute it with `python -m helpers evaluate tiny`"):
        recipes.stored_evaluation("tiny")
    recipes.evaluate("tiny")
    recipes.evaluate("tiny:extra")
    first = recipes.stored_evaluation("tiny")
    assert first["sha256"] == checkpoints.entry("tiny")["sha256"]

    recipes.train("tiny")                                       # new weights, evaluations kept but stale
    meta = checkpoints.entry("tiny")
    assert meta["evaluation"] == first and meta["metrics"] == {"run": 2}
    assert checkpoints.evaluation_status("tiny") == "stale"
    assert checkpoints.evaluation_status("tiny", "extra") == "stale"
    with pytest.raises(CheckpointError, match="scored earlier weights of 'tiny'.*`python -m helpers evaluate tiny`"):
        recipes.stored_evaluation("tiny")
    with pytest.raises(CheckpointError, match="`python -m helpers evaluate tiny:extra`"):
        recipes.stored_evaluation("tiny", part="extra")

    recipes.evaluate("tiny")
    assert checkpoints.evaluation_status("tiny") == "current"
    assert recipes.stored_evaluation("tiny")["first_weight"] != first["first_weight"]
    assert checkpoints.evaluation_status("tiny", "extra") == "stale"     # each evaluation on its own


def test_the_command_line_evaluates_after_training_unless_told_not_to(tiny_recipe, capsys):
    assert main(["train", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "evaluation tiny: current" in out and "evaluation tiny:extra: current" in out
    assert main(["train", "tiny", "--no-evaluate"]) == 0
    out = capsys.readouterr().out
    assert "evaluation tiny: stale" in out and "evaluation tiny:extra: stale" in out


def test_in_smoke_mode_the_evaluation_is_recomputed_not_stored(tiny_recipe, monkeypatch):
    recipes.train("tiny")
    recipes.evaluate("tiny")
    recipes.train("tiny")
    monkeypatch.setenv("DGM_SMOKE", "1")
    fresh = recipes.stored_evaluation("tiny")
    assert fresh["sha256"] == checkpoints.entry("tiny")["sha256"]
    assert checkpoints.evaluation_status("tiny") == "stale"             # nothing stored in smoke mode


def test_an_evaluation_records_the_weights_it_loaded_not_those_saved_meanwhile(tiny_recipe, monkeypatch):
    recipes.train("tiny")
    loaded_sha = checkpoints.entry("tiny")["sha256"]

    def retrain_meanwhile(model):
        recipes.train("tiny")                                  # the file changes while the evaluation runs
        return {"x": 1}
    monkeypatch.setitem(registry.EVALUATIONS, "tiny", retrain_meanwhile)
    result = recipes.evaluate("tiny")
    assert result["sha256"] == loaded_sha != checkpoints.entry("tiny")["sha256"]
    assert checkpoints.evaluation_status("tiny") == "stale"


class Interrupt(Exception):
    pass


def test_resuming_says_so_and_counts_every_process(tmp_path, capsys):
    resume = tmp_path / "run.pt"
    x = torch.rand(16, 1, 28, 28)

    def run(stop_after=None):
        model = VAE(channels=1, latent_dim=4, width=4)
        def validate(m):
            if stop_after is not None and len(history_epochs) == stop_after:
                raise Interrupt
            history_epochs.append(1)
            return {}
        history_epochs = []
        return fit(model, lambda m, b: m.loss(b[0]), (x,), epochs=3, batch_size=8, resume_path=resume,
                   validate=validate, desc="tiny_vae")

    with pytest.raises(Interrupt):
        run(stop_after=2)                                      # epochs 1 and 2 finish, then an interruption
    earlier = read_resume_seconds(resume)
    assert earlier > 0
    history = run()
    assert "resuming tiny_vae from epoch 3 of 3 (2 finished" in capsys.readouterr().out
    assert len(history.epochs) == 3
    assert earlier == pytest.approx(sum(e["seconds"] for e in history.epochs[:2]))
    assert not resume.exists() and read_resume_seconds(resume) == 0.0
