import json
import os

import pytest
import torch

from helpers import checkpoints, recipes, settings
from helpers.checkpoints import CheckpointError
from helpers.nets import DigitClassifier


def saved(ckpt_dir, name="tiny", width=4):
    model = DigitClassifier(width=width)
    checkpoints.save(name, model, metrics={"acc": 0.5}, data_mode="MONO_FLOAT_COMPLETE")
    return model


def edit_manifest(ckpt_dir, fn):
    path = ckpt_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    fn(manifest)
    path.write_text(json.dumps(manifest))


def test_round_trip_builds_the_model_from_the_manifest(ckpt_dir):
    model = saved(ckpt_dir)
    loaded = checkpoints.load("tiny", device="cpu")
    assert isinstance(loaded, DigitClassifier) and not loaded.training
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    meta = checkpoints.entry("tiny")
    assert meta["config"] == {"class": "DigitClassifier", "kwargs": {"width": 4, "n_classes": 10, "dropout": 0.3,
                                                                   "channels": 1, "image_size": 28}}
    assert meta["command"] == "python -m helpers train tiny" and meta["metrics"] == {"acc": 0.5}
    assert meta["sha256"] == checkpoints.sha256_of(ckpt_dir / "tiny.pt")
    assert {"torch", "python", "numpy"} <= set(meta["versions"])


def test_unknown_and_missing_checkpoints(ckpt_dir):
    with pytest.raises(CheckpointError, match="no checkpoint named 'nope'.*python -m helpers train nope"):
        checkpoints.load("nope")
    saved(ckpt_dir)
    os.remove(ckpt_dir / "tiny.pt")
    with pytest.raises(CheckpointError, match="is missing"):
        checkpoints.load("tiny")


def test_corrupted_file_fails_the_sha256_check(ckpt_dir):
    saved(ckpt_dir)
    path = ckpt_dir / "tiny.pt"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupt: sha256"):
        checkpoints.load("tiny")


def test_wrong_sha256_in_manifest(ckpt_dir):
    saved(ckpt_dir)
    edit_manifest(ckpt_dir, lambda m: m["tiny"].update(sha256="0" * 64))
    with pytest.raises(CheckpointError, match="does not match the manifest"):
        checkpoints.load("tiny")


def test_unreadable_file_with_matching_sha256(ckpt_dir):
    saved(ckpt_dir)
    (ckpt_dir / "tiny.pt").write_bytes(b"not a torch file")
    edit_manifest(ckpt_dir, lambda m: m["tiny"].update(sha256=checkpoints.sha256_of(ckpt_dir / "tiny.pt")))
    with pytest.raises(CheckpointError, match="cannot be read"):
        checkpoints.load("tiny")


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_loading_never_runs_pickled_code(ckpt_dir):
    saved(ckpt_dir)
    torch.save({"x": Evil()}, ckpt_dir / "tiny.pt")
    edit_manifest(ckpt_dir, lambda m: m["tiny"].update(sha256=checkpoints.sha256_of(ckpt_dir / "tiny.pt")))
    with pytest.raises(CheckpointError, match="cannot be read"):
        checkpoints.load("tiny")


def test_weights_of_another_architecture(ckpt_dir):
    saved(ckpt_dir, width=4)
    edit_manifest(ckpt_dir, lambda m: m["tiny"]["config"]["kwargs"].update(width=8))
    with pytest.raises(CheckpointError, match="does not fit architecture"):
        checkpoints.load("tiny")
    edit_manifest(ckpt_dir, lambda m: m["tiny"]["config"].update({"class": "os.system"}))
    with pytest.raises(CheckpointError, match="unknown architecture"):
        checkpoints.load("tiny")


def test_interrupted_save_leaves_the_old_file_intact(ckpt_dir, monkeypatch):
    saved(ckpt_dir)
    before = (ckpt_dir / "tiny.pt").read_bytes()
    manifest_before = (ckpt_dir / "manifest.json").read_text()

    def dies_halfway(obj, f, *a, **k):
        f.write(b"half a file")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save("tiny", DigitClassifier(width=4))
    assert (ckpt_dir / "tiny.pt").read_bytes() == before
    assert (ckpt_dir / "manifest.json").read_text() == manifest_before
    # no temporary file left behind (the manifest's lock file is meant to stay)
    assert sorted(p.name for p in ckpt_dir.iterdir() if p.name != ".manifest.lock") == ["manifest.json", "tiny.pt"]
    monkeypatch.undo()
    checkpoints.load("tiny", directory=ckpt_dir)


def test_models_outside_the_architecture_table_cannot_be_saved(ckpt_dir):
    with pytest.raises(TypeError, match="ARCHITECTURES"):
        checkpoints.save("x", torch.nn.Linear(2, 2))


def test_smoke_retraining_does_not_overwrite_shipped_weights(ckpt_dir, smoke):
    model = recipes.load_or_train("verification_net", retrain=True, device="cpu")
    assert isinstance(model, DigitClassifier)
    assert not (ckpt_dir / "verification_net.pt").exists()


def test_every_shipped_checkpoint_loads_in_a_fresh_interpreter():
    """Nothing but `helpers.checkpoints` imported: the manifest alone must suffice to build models."""
    import subprocess
    import sys
    code = ("from helpers import checkpoints as c\n"
            "for name in c.read_manifest():\n"
            "    m = c.load(name, device='cpu')\n"
            "    assert not m.training, name\n"
            "print(len(c.read_manifest()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "DGM_CHECKPOINT_DIR"})
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 1


def _add_entries(directory: str, prefix: str, count: int) -> None:
    from pathlib import Path

    from helpers import checkpoints
    for i in range(count):
        checkpoints.update_manifest(lambda m, key=f"{prefix}{i}": m.__setitem__(key, {"i": i}), Path(directory))


def test_manifest_updates_from_two_processes_lose_nothing(tmp_path):
    """Two processes updating one manifest at once: every entry of both survives (the lock)."""
    import multiprocessing

    from helpers import checkpoints
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_add_entries, args=(str(tmp_path), prefix, 25)) for prefix in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert all(w.exitcode == 0 for w in workers)
    manifest = checkpoints.read_manifest(tmp_path)
    assert sorted(manifest) == sorted([f"a{i}" for i in range(25)] + [f"b{i}" for i in range(25)])


def test_half_precision_storage_halves_the_file_and_loads_into_float32(tmp_path):
    from helpers.models import GAN
    with settings.forked_rng(0):
        gan = GAN(latent_dim=32, width=16, snapshots=2, blocks=1)
    full = checkpoints.save("full", gan, directory=tmp_path)
    half = checkpoints.save("half", gan, directory=tmp_path, storage="float16")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert checkpoints.entry("half", tmp_path)["storage"] == "float16"
    loaded = checkpoints.load("half", "cpu", directory=tmp_path)
    for (key, a), b in zip(gan.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == a.dtype, key                                    # floats come back as float32
        expected = a.half().to(a.dtype) if a.is_floating_point() else a
        assert torch.equal(b, expected), key
    stored = torch.load(half, weights_only=True)
    assert stored["snapshot_images"].dtype == torch.uint8 and stored["generator.fc.0.weight"].dtype == torch.float16
    big = torch.nn.Linear(2, 1)
    with torch.no_grad():
        big.weight.fill_(1e6)                                             # beyond float16: kept float32
    assert checkpoints._stored(big.weight.detach(), "float16").dtype == torch.float32
    with pytest.raises(ValueError, match="storage must be one of"):
        checkpoints.save("x", gan, directory=tmp_path, storage="int8")


def test_rounding_to_the_storage_gives_exactly_the_weights_that_load_back(tmp_path):
    from helpers.models import GAN
    with settings.forked_rng(0):
        gan = GAN(latent_dim=32, width=16, snapshots=2, blocks=1).eval()
    before = {k: v.clone() for k, v in gan.state_dict().items()}
    checkpoints.round_to_storage(gan, "float16")
    checkpoints.save("half", gan, directory=tmp_path, storage="float16")
    loaded = checkpoints.load("half", "cpu", directory=tmp_path)
    for (key, a), b in zip(gan.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), key
        if a.is_floating_point():
            assert torch.equal(a, before[key].half().float()), key              # float16's rounding, in place
    z = torch.randn(4, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(gan.decode(z), loaded.decode(z))                           # the samples scored are the shipped ones
    assert checkpoints.round_to_storage(gan, "float32") is gan
    with pytest.raises(ValueError, match="storage must be one of"):
        checkpoints.round_to_storage(gan, "bf16")
