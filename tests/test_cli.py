import pytest

from helpers import recipes
from helpers.__main__ import main


def test_every_shipped_checkpoint_has_a_recipe():
    from helpers import checkpoints
    assert set(checkpoints.read_manifest()) <= set(recipes.RECIPES)


def test_list_names_every_recipe(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in recipes.RECIPES:
        assert name in out


def test_unknown_checkpoint_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["train", "no_such_model"])
    assert "unknown checkpoint" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no recipe named"):
        recipes.train("no_such_model")


def test_smoke_training_from_the_command_line_saves_nothing(ckpt_dir, smoke, monkeypatch):
    import json
    import shutil

    from helpers import settings
    shipped = settings.PROJECT_ROOT / "checkpoints"
    shutil.copy(shipped / "verification_net.pt", ckpt_dir)        # the metrics need the verifier
    manifest = json.loads((shipped / "manifest.json").read_text())
    (ckpt_dir / "manifest.json").write_text(json.dumps({"verification_net": manifest["verification_net"]}))
    assert main(["train", "ae_mono", "vae_categorical"]) == 0
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["manifest.json", "verification_net.pt"]


def test_smoke_evaluation_runs_and_stores_nothing(smoke, capsys):
    from helpers import checkpoints
    before = checkpoints.read_manifest()
    assert main(["evaluate", "vae_z100"]) == 0
    out = capsys.readouterr().out
    assert "val_log_px" in out and "test_elbo_se" in out
    assert checkpoints.read_manifest() == before


def test_unknown_evaluation_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "no_such_checkpoint"])
    assert "no evaluation for" in capsys.readouterr().err
