"""Every public entry refuses bad input with a message that says what is wrong (issue list of
inputs: NaN/inf images and codes, float64, bad sample counts, empty batches, unavailable devices,
corrupt data, resume and manifest files)."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers import checkpoints, metrics, recipes, settings
from helpers.checkpoints import CheckpointError
from helpers.data import DatasetCorruptError, load_mnist, validate_images
from helpers.models import GAN, VAE, AutoEncoder, ChannelWise
from helpers.nets import DigitClassifier
from helpers.training import ResumeError, fit, read_resume_state
from helpers.verification import Verifier

from test_checkpoints import edit_manifest  # tests/ is on sys.path (pytest's prepend import mode)

SHARED_RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "MNIST" / "raw"


def images(n=4, channels=1, size=28):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0))


def with_nan(x, value=float("nan")):
    x = x.clone()
    x[0, 0, 3, 3] = value
    return x


def tiny_vae():
    return VAE(channels=1, latent_dim=4, width=4).eval()


def tiny_models():
    return {"ae": AutoEncoder(latent_dim=4, width=4).eval(), "vae": tiny_vae(),
            "gan": GAN(latent_dim=4, width=4).eval(), "channelwise": ChannelWise(tiny_vae())}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_validate_images_refuses_nan_and_inf(value):
    with pytest.raises(ValueError, match="NaN or infinite values \\(in 1 of 4 images\\)"):
        validate_images(with_nan(images(), value))


def test_validate_images_refuses_float64_with_the_conversion():
    with pytest.raises(TypeError, match="must be float32.*got torch.float64; convert with images.float"):
        validate_images(images().double())


@pytest.mark.parametrize("call", ["encode", "reconstruct", "elbo", "importance_log_px", "posterior"])
def test_vae_entries_refuse_nan_images(call):
    vae, x = tiny_vae(), with_nan(images())
    fns = {"encode": lambda: vae.encode(x), "reconstruct": lambda: vae.reconstruct(x),
           "elbo": lambda: metrics.elbo(vae, x), "posterior": lambda: vae.posterior(x),
           "importance_log_px": lambda: metrics.importance_log_px(vae, x, n_samples=2)}
    with pytest.raises(ValueError, match="NaN or infinite"):
        fns[call]()


def test_ae_and_verifier_refuse_nan_images():
    ae, x = AutoEncoder(latent_dim=4, width=4).eval(), with_nan(images())
    with pytest.raises(ValueError, match="NaN or infinite"):
        ae.reconstruction_loss(x)
    verifier = Verifier(DigitClassifier(width=4).eval())
    with pytest.raises(ValueError, match="NaN or infinite"):
        verifier.classify(x)
    with pytest.raises(ValueError, match="NaN or infinite"):
        metrics.reconstruction_accuracy(ae, verifier, x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN or infinite"):
        metrics.generation_quality(verifier, torch.full((4, 1, 28, 28), float("nan")))


@pytest.mark.parametrize("name", ["ae", "vae", "gan"])
def test_decode_refuses_nan_and_float64_codes(name):
    model = tiny_models()[name]
    z = torch.zeros(2, 4)
    z[1, 2] = float("nan")
    with pytest.raises(ValueError, match="codes hold NaN or infinite values \\(in 1 of 2 codes\\)"):
        model.decode(z)
    with pytest.raises(TypeError, match="codes must be float32"):
        model.decode(torch.zeros(2, 4, dtype=torch.float64))


@pytest.mark.parametrize("name", ["ae", "vae", "gan", "channelwise"])
def test_sample_counts(name):
    model = tiny_models()[name]
    empty = model.sample(0)
    assert empty.shape[0] == 0 and empty.dim() == 4
    with pytest.raises(ValueError, match="must be >= 0, got -3"):
        model.sample(-3)
    with pytest.raises(TypeError, match="whole number of images, got 2.5"):
        model.sample(2.5)
    with pytest.raises(TypeError, match="whole number"):
        model.sample(True)
    assert model.sample(3, generator=torch.Generator().manual_seed(0)).shape[0] == 3


def test_empty_batches_and_zero_counts():
    vae, x = tiny_vae(), images()
    with pytest.raises(ValueError, match="empty batch of images"):
        metrics.elbo(vae, x[:0])
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        metrics.elbo(vae, x, batch_size=0)
    with pytest.raises(ValueError, match="n_samples must be >= 1, got 0"):
        metrics.importance_log_px(vae, x, n_samples=0)
    with pytest.raises(ValueError, match="empty batch of images"):
        metrics.importance_log_px(vae, x[:0], n_samples=2)


def test_an_unavailable_device_is_named():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="device 'cuda' is not available on this machine"):
        settings.resolve_device("cuda")
    with pytest.raises(ValueError, match="not a device name"):
        settings.resolve_device("gpu please")
    assert settings.resolve_device("cpu") == torch.device("cpu")


def test_load_on_an_unavailable_device(ckpt_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    checkpoints.save("tiny", DigitClassifier(width=4))
    with pytest.raises(ValueError, match="device 'cuda' is not available"):
        checkpoints.load("tiny", device="cuda")


# --- MNIST files ------------------------------------------------------------------------------------

@pytest.fixture
def mnist_copy(tmp_path):
    if not SHARED_RAW.is_dir():
        pytest.skip("MNIST is not at ../shared/data")
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(SHARED_RAW, raw)
    return tmp_path


def _corrupt_a_label(root, keep_md5sums: bool):
    """Change one byte of the test labels of the MNIST copy under root (the file keeps its size)."""
    raw = root / "MNIST" / "raw"
    if not keep_md5sums:
        (raw / "MD5SUMS").unlink()
    path = raw / "t10k-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[100] = 95
    path.write_bytes(bytes(data))


def test_same_size_corrupt_labels_fail_the_md5_check(mnist_copy):
    _corrupt_a_label(mnist_copy, keep_md5sums=True)
    with pytest.raises(DatasetCorruptError, match="t10k-labels-idx1-ubyte is corrupt: md5"):
        load_mnist(train=False, root=mnist_copy)


def test_label_sanity_without_md5sums(mnist_copy):
    _corrupt_a_label(mnist_copy, keep_md5sums=False)
    with pytest.raises(DatasetCorruptError, match="labels of shape \\(10000,\\) in \\[0, 95\\], expected"):
        load_mnist(train=False, root=mnist_copy)


def test_truncated_file_is_refused(mnist_copy):
    raw = mnist_copy / "MNIST" / "raw"
    (raw / "MD5SUMS").unlink()
    path = raw / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(DatasetCorruptError, match="cannot be read.*copy the files again"):
        load_mnist(train=False, root=mnist_copy)


# --- resume files -----------------------------------------------------------------------------------

def _tiny_fit(resume):
    model = DigitClassifier(width=4)
    x, y = images(8), torch.zeros(8, dtype=torch.long)
    fit(model, lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1]), (x, y), epochs=1, batch_size=4,
        resume_path=resume, progress=False)


def test_a_truncated_resume_file_names_its_path_and_the_fix(tmp_path):
    resume = tmp_path / "run.pt"
    torch.save({"model": {}}, resume)
    resume.write_bytes(resume.read_bytes()[:40])
    with pytest.raises(ResumeError, match=f"resume file {resume} cannot be read.*rm {resume}"):
        _tiny_fit(resume)


def test_a_foreign_resume_file_is_refused(tmp_path):
    resume = tmp_path / "run.pt"
    torch.save({"weights": torch.zeros(2)}, resume)
    with pytest.raises(ResumeError, match="not a training state written by fit; delete it"):
        read_resume_state(resume)


class Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_a_tampered_resume_file_never_suggests_weights_only_false(tmp_path):
    resume = tmp_path / "run.pt"
    torch.save({"x": Evil()}, resume)
    with pytest.raises(ResumeError) as info:
        read_resume_state(resume)
    assert "weights_only=False" not in str(info.value) and "never unpickled" in str(info.value)


# --- manifest entries -------------------------------------------------------------------------------

def test_a_null_manifest_entry(ckpt_dir):
    checkpoints.save("tiny", DigitClassifier(width=4))
    edit_manifest(ckpt_dir, lambda m: m.__setitem__("tiny", None))
    with pytest.raises(CheckpointError, match="manifest entry 'tiny' .* is NoneType, not a mapping"):
        checkpoints.load("tiny")


def test_an_entry_without_sha256(ckpt_dir):
    checkpoints.save("tiny", DigitClassifier(width=4))
    edit_manifest(ckpt_dir, lambda m: m["tiny"].pop("sha256"))
    with pytest.raises(CheckpointError, match="manifest entry 'tiny' .* lacks sha256"):
        checkpoints.load("tiny")


@pytest.mark.parametrize("file", ["../../../../etc/hostname", "/etc/hostname", "sub/tiny.pt", ".."])
def test_the_file_field_stays_in_the_checkpoint_folder(ckpt_dir, file):
    checkpoints.save("tiny", DigitClassifier(width=4))
    edit_manifest(ckpt_dir, lambda m: m["tiny"].update(file=file))
    with pytest.raises(CheckpointError, match="not a plain file name inside"):
        checkpoints.load("tiny")
    with pytest.raises(CheckpointError, match="not a plain file name inside"):
        checkpoints.exists("tiny")


def test_an_unknown_config_key(ckpt_dir):
    checkpoints.save("tiny", DigitClassifier(width=4))
    edit_manifest(ckpt_dir, lambda m: m["tiny"]["config"]["kwargs"].update(depth=3))
    with pytest.raises(CheckpointError, match="config .* cannot build DigitClassifier.*depth"):
        checkpoints.load("tiny")


def test_a_blocked_checkpoint_never_suggests_weights_only_false(ckpt_dir):
    checkpoints.save("tiny", DigitClassifier(width=4))
    torch.save({"x": Evil()}, ckpt_dir / "tiny.pt")
    edit_manifest(ckpt_dir, lambda m: m["tiny"].update(sha256=checkpoints.sha256_of(ckpt_dir / "tiny.pt")))
    with pytest.raises(CheckpointError) as info:
        checkpoints.load("tiny")
    assert "weights_only=False" not in str(info.value) and "never unpickled" in str(info.value)


def test_train_refuses_an_unavailable_device():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="device 'cuda' is not available"):
        recipes.train("ae_mono", device="cuda")
