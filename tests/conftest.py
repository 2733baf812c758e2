import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Tests read MNIST from ../shared/data when the caller has not chosen a data root.
if not os.environ.get("DGM_DATA_DIR") and (SHARED_DATA / "MNIST" / "raw").is_dir():
    os.environ["DGM_DATA_DIR"] = str(SHARED_DATA)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def smoke(monkeypatch):
    monkeypatch.setenv("DGM_SMOKE", "1")


@pytest.fixture
def ckpt_dir(tmp_path, monkeypatch):
    """An empty checkpoint folder, used instead of the shipped one."""
    d = tmp_path / "checkpoints"
    d.mkdir()
    monkeypatch.setenv("DGM_CHECKPOINT_DIR", str(d))
    return d


@pytest.fixture
def verifier_only(ckpt_dir):
    """A temporary checkpoint folder holding only the shipped verification net (the metrics need it)."""
    import json
    import shutil

    shipped = Path(__file__).resolve().parents[1] / "checkpoints"
    shutil.copy(shipped / "verification_net.pt", ckpt_dir)
    manifest = json.loads((shipped / "manifest.json").read_text())
    (ckpt_dir / "manifest.json").write_text(json.dumps({"verification_net": manifest["verification_net"]}))
    return ckpt_dir
