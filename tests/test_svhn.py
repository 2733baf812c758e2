"""SVHN end to end on small generated files: the loader (SVHN's .mat layout, label 10 -> 0, the
seeded split, full SVHN through torchvision, clear errors), PNG directories, the FID command, the
shared generator of the VAE and the WGAN-GP, and smoke runs of the three SVHN recipes."""
import hashlib
import json
import math
import shutil

import numpy as np
import pytest
import scipy.io
import torch

from helpers import recipes
from helpers import svhn_data as data
from helpers.data import DatasetCorruptError, DatasetNotFoundError
from helpers.png import read_png_directory, write_png_directory
from helpers.svhn_data import load_svhn


def write_svhn_mat(path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A .mat in SVHN's format: X uint8 (32, 32, 3, n), y (n, 1) uint8 in 1..10 (10 = digit 0).
    Image i has X[0, 0, 0, i] = i % 256 and X[1, 2, 0, i] = 200 (row 1, column 2, red)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    x[0, 0, 0, :] = np.arange(n) % 256
    x[1, 2, 0, :] = 200
    y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)
    y[:3, 0] = [10, 1, 10]
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"X": x, "y": y})
    return x, y


@pytest.fixture
def svhn_root(tmp_path, monkeypatch):
    """A data root holding a 60-image SVHN-sample/test_32x32.mat (the DGM_DATA_DIR of the test)."""
    root = tmp_path / "data"
    x, y = write_svhn_mat(root / data.SVHN_SAMPLE_FILE, 60)
    monkeypatch.setenv("DGM_DATA_DIR", str(root))
    return root, x, y


def test_the_sample_is_read_in_svhns_layout_with_label_10_as_digit_0(svhn_root, capsys):
    root, x, y = svhn_root
    svhn = load_svhn()
    assert svhn.source == "sample" and "SVHN sample" in capsys.readouterr().out
    assert svhn.sizes() == {"train": 42, "val": 6, "test": 12}
    images = torch.cat([svhn.train[0], svhn.val[0], svhn.test[0]])
    labels = torch.cat([svhn.train[1], svhn.val[1], svhn.test[1]])
    assert images.shape == (60, 3, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert 0 <= images.min() and images.max() <= 1
    index = (images[:, 0, 0, 0] * 255).round().long()                  # which original image each row is
    assert sorted(index.tolist()) == list(range(60))
    expected = torch.from_numpy(y[:, 0].astype(np.int64)) % 10
    assert torch.equal(labels, expected[index])
    assert set(expected[:3].tolist()) == {0, 1}                        # 10 became 0
    assert torch.all(images[:, 0, 1, 2] == 200 / 255)                  # X[h, w, c, n] -> (n, c, h, w)
    original = torch.from_numpy(x).permute(3, 2, 0, 1).float() / 255
    assert torch.equal(images, original[index])


def test_the_split_is_fixed_by_its_seed(svhn_root):
    def order(svhn):
        return [(svhn.part(p)[0][:, 0, 0, 0] * 255).round().long().tolist() for p in ("train", "val", "test")]
    first, again, other = load_svhn(seed=0), load_svhn(seed=0), load_svhn(seed=1)
    assert order(first) == order(again)
    assert order(first) != order(other)
    assert sorted(sum(order(other), [])) == list(range(60))
    assert data.svhn_split_sizes(10_000) == {"train": 7000, "val": 1000, "test": 2000}


def test_smoke_mode_takes_subsets_of_the_split(tmp_path, monkeypatch):
    root = tmp_path / "big"
    write_svhn_mat(root / data.SVHN_SAMPLE_FILE, 1000)
    full = load_svhn(root, verbose=False)
    monkeypatch.setenv("DGM_SMOKE", "1")
    small = load_svhn(root, verbose=False)
    assert small.sizes() == {"train": 512, "val": 100, "test": 200}
    assert torch.equal(small.train[0], full.train[0][:512])


def test_missing_svhn_names_both_sources_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("DGM_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_svhn()
    message = str(info.value)
    assert "SVHN-sample" in message and "train_32x32.mat" in message and "DGM_DATA_DIR" in message


def test_a_corrupt_or_foreign_file_is_a_clear_error(tmp_path):
    path = tmp_path / data.SVHN_SAMPLE_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(DatasetCorruptError, match="cannot be read"):
        load_svhn(tmp_path)
    scipy.io.savemat(str(path), {"images": np.zeros((4, 4))})
    with pytest.raises(DatasetCorruptError, match="no 'X' and 'y'"):
        load_svhn(tmp_path)
    scipy.io.savemat(str(path), {"X": np.zeros((32, 32, 3, 5), np.uint8), "y": np.zeros((5, 1), np.uint8)})
    with pytest.raises(DatasetCorruptError, match="labels must be 1..10"):
        load_svhn(tmp_path)
    scipy.io.savemat(str(path), {"X": np.zeros((28, 28, 5), np.uint8), "y": np.ones((5, 1), np.uint8)})
    with pytest.raises(DatasetCorruptError, match=r"\(32, 32, 3, N\)"):
        load_svhn(tmp_path)


def test_a_checksum_mismatch_is_a_clear_error(tmp_path):
    path = tmp_path / data.SVHN_SAMPLE_FILE
    write_svhn_mat(path, 20)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (path.parent / "SHA256SUMS").write_text(f"{digest}  test_32x32.mat\n")
    assert load_svhn(tmp_path, verbose=False).source == "sample"
    (path.parent / "SHA256SUMS").write_text(f"{'0' * 64}  test_32x32.mat\n")
    with pytest.raises(DatasetCorruptError, match="sha256"):
        load_svhn(tmp_path)


def test_full_svhn_on_disk_is_read_by_torchvision(tmp_path, monkeypatch):
    import torchvision
    for split, n in (("train", 40), ("test", 15)):
        write_svhn_mat(tmp_path / "SVHN" / f"{split}_32x32.mat", n, seed=n)
    write_svhn_mat(tmp_path / data.SVHN_SAMPLE_FILE, 20)                 # the sample is there too: not used
    monkeypatch.setattr(data, "SVHN_FULL_VAL", 10)
    monkeypatch.setattr(torchvision.datasets.SVHN, "_check_integrity", lambda self: True)
    svhn = load_svhn(tmp_path, verbose=False)
    assert svhn.source == "full" and svhn.sizes() == {"train": 30, "val": 10, "test": 15}
    assert 0 <= svhn.test[1].min() and svhn.test[1].max() <= 9
    monkeypatch.setattr(torchvision.datasets.SVHN, "_check_integrity", lambda self: False)
    data._read_svhn_full.cache_clear()
    with pytest.raises(DatasetCorruptError, match="md5"):
        load_svhn(tmp_path)
    data._read_svhn_full.cache_clear()


# --- PNG directories -------------------------------------------------------------------------------

def test_png_directory_round_trip_and_atomic_replacement(tmp_path):
    images = torch.rand(7, 3, 32, 32)
    paths = write_png_directory(images, tmp_path / "out")
    assert [p.name for p in paths] == [f"{i:05d}.png" for i in range(7)]
    back = read_png_directory(tmp_path / "out", 3, 32)
    assert torch.equal(back, (images * 255).round() / 255)
    with pytest.raises(FileExistsError, match="not empty"):
        write_png_directory(images[:2], tmp_path / "out")
    grey = torch.rand(3, 1, 28, 28)
    write_png_directory(grey, tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]       # no temporary folders left behind
    assert torch.allclose(read_png_directory(tmp_path / "out", 1, 28), grey, atol=0.5 / 255 + 1e-6)


def test_grey_saved_as_rgb_counts_as_grey_and_subdirectories_are_read(tmp_path):
    from PIL import Image
    (tmp_path / "samples").mkdir()
    grey = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "samples" / "a.png")
    out = read_png_directory(tmp_path, 1, 28)
    assert out.shape == (1, 1, 28, 28) and torch.equal(out[0, 0], torch.from_numpy(grey).float() / 255)


@pytest.mark.parametrize("make, words", [
    (lambda d: None, "no .png images"),
    (lambda d: (d / "notes.txt").write_text("hello"), "not PNG images: notes.txt"),
    (lambda d: (d / "broken.png").write_bytes(b"\x89PNG garbage"), "not a readable PNG"),
    (lambda d: write_png_directory(torch.rand(2, 1, 32, 32), d, overwrite=True), "is 32x32, expected 28x28 greyscale"),
    (lambda d: write_png_directory(torch.rand(2, 3, 28, 28), d, overwrite=True), "colour (RGB) image"),
])
def test_bad_sample_directories_are_clear_errors(tmp_path, make, words):
    d = tmp_path / "samples"
    d.mkdir()
    make(d)
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_png_directory(d, 1, 28)
    with pytest.raises(FileNotFoundError):
        read_png_directory(tmp_path / "absent", 1, 28)


# --- the FID command -----------------------------------------------------------------------------

def copy_verifier(ckpt_dir):
    from helpers import settings
    shipped = settings.PROJECT_ROOT / "checkpoints"
    shutil.copy(shipped / "verification_net.pt", ckpt_dir)
    manifest = json.loads((shipped / "manifest.json").read_text())
    (ckpt_dir / "manifest.json").write_text(json.dumps({"verification_net": manifest["verification_net"]}))


def test_fid_command_on_mnist_pngs(tmp_path, ckpt_dir, smoke, capsys):
    from helpers.__main__ import main
    from helpers.data import DataMode, MNISTData
    copy_verifier(ckpt_dir)
    x, _ = MNISTData(DataMode.MONO_FLOAT_COMPLETE).get_full_data_set(training=True)
    write_png_directory(x[:150], tmp_path / "real" / "samples")
    assert main(["fid", str(tmp_path / "real")]) == 0
    out = capsys.readouterr().out
    real = float(out.split("FID: ")[1].split()[0])
    assert "150 samples against 300 images" in out and "distance" in out
    write_png_directory(torch.rand(150, 1, 28, 28), tmp_path / "noise")
    assert main(["fid", str(tmp_path / "noise"), "--test-samples", "200"]) == 0
    out = capsys.readouterr().out
    assert float(out.split("FID: ")[1].split()[0]) > 10 * real and "against 200 images" in out


def test_fid_command_on_several_directories_matches_one_by_one(tmp_path, ckpt_dir, smoke, capsys):
    from helpers.__main__ import main
    from helpers.data import DataMode, MNISTData
    copy_verifier(ckpt_dir)
    x, _ = MNISTData(DataMode.MONO_FLOAT_COMPLETE).get_full_data_set(training=True)
    write_png_directory(x[:150], tmp_path / "real")
    write_png_directory(torch.rand(140, 1, 28, 28), tmp_path / "noise")
    singles = []
    for name in ("real", "noise"):
        assert main(["fid", str(tmp_path / name)]) == 0
        singles.append(float(capsys.readouterr().out.split("FID: ")[1].split()[0]))
    assert main(["fid", str(tmp_path / "real"), str(tmp_path / "noise")]) == 0
    out = capsys.readouterr().out
    both = [float(part.split()[0]) for part in out.split("FID: ")[1:]]
    assert both == pytest.approx(singles, rel=1e-9)
    assert f"{tmp_path / 'noise'}:" in out and "140 samples against 300 images" in out
    (tmp_path / "empty").mkdir()       # a bad directory anywhere in the list stops before any score
    assert main(["fid", str(tmp_path / "real"), str(tmp_path / "empty")]) == 2
    assert "no .png images" in capsys.readouterr().err


def test_a_fid_reference_scores_like_the_command_and_checks_its_input(tmp_path, ckpt_dir, smoke):
    from helpers.data import DataMode, MNISTData
    from helpers.frechet import calculate_fid_score, feature_batches
    copy_verifier(ckpt_dir)
    x, _ = MNISTData(DataMode.MONO_FLOAT_COMPLETE).get_full_data_set(training=True)
    reference = recipes.FIDReference("mnist")
    assert reference.test_features.shape == (len(reference.images), 128)
    direct = calculate_fid_score(feature_batches(reference.extract, x[:150]),
                                 feature_batches(reference.extract, reference.images))
    assert reference.score(x[:150]) == pytest.approx(direct, rel=1e-9)
    assert reference.score(x[:150]) == pytest.approx(recipes.fid_against_test(x[:150]).fid, rel=1e-9)
    with pytest.raises(ValueError, match="channel|shape|28"):
        reference.score(torch.rand(150, 3, 32, 32))
    with pytest.raises(ValueError, match="NaN|finite"):
        reference.score(torch.full((150, 1, 28, 28), float("nan")))
    other = recipes.FIDReference("mnist", images=x[150:300], what="training images 150-299")
    expected = calculate_fid_score(feature_batches(other.extract, x[:150]), feature_batches(other.extract, x[150:300]))
    assert other.test_set == "training images 150-299" and other.score(x[:150]) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="channel|shape|28"):
        recipes.FIDReference("mnist", images=torch.rand(150, 3, 32, 32))


@pytest.mark.parametrize("setup, words", [
    (lambda d: d.mkdir(), "no .png images"),
    (lambda d: write_png_directory(torch.rand(5, 1, 28, 28), d), "needs more than 128 samples"),
    (lambda d: write_png_directory(torch.rand(3, 3, 32, 32), d), "is 32x32, expected 28x28 greyscale"),
])
def test_fid_command_errors(tmp_path, ckpt_dir, smoke, capsys, setup, words):
    from helpers.__main__ import main
    copy_verifier(ckpt_dir)
    setup(tmp_path / "s")
    assert main(["fid", str(tmp_path / "s")]) == 2
    assert words in capsys.readouterr().err


def test_fid_command_on_svhn_pngs(tmp_path, ckpt_dir, smoke, monkeypatch, capsys):
    from helpers import checkpoints, recipes
    from helpers.__main__ import main
    root = tmp_path / "data"
    write_svhn_mat(root / data.SVHN_SAMPLE_FILE, 1000)
    monkeypatch.setenv("DGM_DATA_DIR", str(root))
    write_png_directory(torch.rand(140, 3, 32, 32), tmp_path / "samples")
    assert main(["fid", str(tmp_path / "samples"), "--dataset", "svhn"]) == 2
    assert "python -m helpers train svhn_classifier" in capsys.readouterr().err   # no classifier yet
    with torch.random.fork_rng():
        torch.manual_seed(0)
        checkpoints.save(recipes.SVHN_CLASSIFIER, recipes.svhn_classifier_net(width=8))
    assert main(["fid", str(tmp_path / "samples"), "--dataset", "svhn"]) == 0
    out = capsys.readouterr().out
    assert "140 samples against 200 images of the SVHN held-out part (sample)" in out
    write_png_directory(torch.rand(140, 1, 28, 28), tmp_path / "grey")
    assert main(["fid", str(tmp_path / "grey"), "--dataset", "svhn"]) == 2
    assert "expected 32x32 RGB" in capsys.readouterr().err


# --- IFT6135 Problem 3's two models ----------------------------------------------------------------

def test_the_vae_decoder_and_the_gan_generator_are_one_architecture():
    from helpers.models import GAN, VAE
    vae = VAE(channels=3, latent_dim=100, width=16, likelihood="unit_gaussian", arch="dcgan", image_size=32).eval()
    gan = GAN(channels=3, latent_dim=100, width=16, image_size=32, d_norm=None).eval()
    assert type(gan.generator).__name__ == "DCGANGenerator" and isinstance(vae.decoder, type(gan.generator))
    gan.generator.load_state_dict(vae.decoder.state_dict(), strict=True)
    z = torch.randn(5, 100)
    assert torch.allclose(vae.decode(z), gan.decode(z), atol=1e-6)      # g_VAE(z) = g_GAN(z)


def test_unit_gaussian_likelihood_is_normal_with_variance_one():
    from helpers.likelihoods import make_likelihood
    lik = make_likelihood("unit_gaussian")
    params, x = torch.randn(4, 3, 5, 5), torch.rand(4, 3, 5, 5)
    expected = torch.distributions.Normal(torch.sigmoid(params), 1.0).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(lik.log_prob(params, x), expected, atol=1e-4)
    assert torch.equal(lik.mean(params), torch.sigmoid(params)) and lik.n_params == 1
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(lik.sample(params, g1), lik.sample(params, g2))


@pytest.mark.parametrize("name", ["svhn_classifier", "vae_svhn", "vae_svhn_flow", "wgan_gp_svhn"])
def test_svhn_recipes_smoke_run_with_their_metrics(tmp_path, ckpt_dir, smoke, monkeypatch, name):
    from helpers import checkpoints, recipes
    root = tmp_path / "data"
    write_svhn_mat(root / data.SVHN_SAMPLE_FILE, 1000)
    monkeypatch.setenv("DGM_DATA_DIR", str(root))
    if name != "svhn_classifier":     # with a classifier checkpoint the recipe scores its samples
        with torch.random.fork_rng():
            torch.manual_seed(1)
            checkpoints.save(recipes.SVHN_CLASSIFIER, recipes.svhn_classifier_net(width=8))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        result = recipes.RECIPES[name](torch.device("cpu"), None)
    assert result.data_mode == ("SVHN sample (1,000 SVHN test images, not the full dataset), split with seed 0 "
                                "into 700 train / 100 validation / 200 held-out images; trained on the train part")
    if name == "svhn_classifier":
        assert {"val_accuracy", "test_accuracy", "real_fid"} <= set(result.metrics)
    else:
        # an untrained classifier's features can be nearly constant, so the FID may round to 0
        assert result.metrics["fid_samples"] == 256 and math.isfinite(result.metrics["fid"]) and result.metrics["fid"] >= 0
        assert result.model.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, 3, 32, 32)
    if name in ("vae_svhn", "vae_svhn_flow"):
        assert {"val_elbo", "test_elbo", "test_rec", "test_kl"} <= set(result.metrics)
        assert type(result.model.prior).__name__ == ("RealNVP" if name == "vae_svhn_flow" else "StandardNormal")


def test_svhn_vae_evaluation_log_px_is_at_least_the_elbo_on_average(tmp_path, smoke, monkeypatch):
    """The stored SVHN likelihood evaluation: importance-sampled log p(x) (K >= 1) is a tighter bound
    than the one-sample ELBO on average, for both priors; the per-image values are kept."""
    from helpers import recipes
    from helpers.models import VAE
    root = tmp_path / "data"
    write_svhn_mat(root / data.SVHN_SAMPLE_FILE, 1000)
    monkeypatch.setenv("DGM_DATA_DIR", str(root))
    for prior in ({}, recipes.FLOW_PRIOR):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = VAE(channels=3, latent_dim=8, width=8, likelihood="unit_gaussian", arch="dcgan", image_size=32,
                        **prior).eval()
        out = recipes.svhn._evaluate_svhn_vae(model)
        assert out["images"] == 200 and len(out["test_log_px"]["values"]) == 200
        assert out["test_log_px"]["mean"] >= out["test_elbo"]["mean"] - 0.05


def test_a_held_out_mlp_judges_the_svhn_samples(tmp_path, ckpt_dir, smoke, monkeypatch):
    """`NAME:heldout` of an SVHN model: the MLP's accuracy, confidence and agreement with
    svhn_classifier, recomputed here from the two networks."""
    from helpers import checkpoints, recipes
    from helpers.models import GAN
    root = tmp_path / "data"
    write_svhn_mat(root / data.SVHN_SAMPLE_FILE, 1000)
    monkeypatch.setenv("DGM_DATA_DIR", str(root))
    recipes.svhn_heldout_classifier.cache_clear()
    with torch.random.fork_rng():
        torch.manual_seed(1)
        checkpoints.save(recipes.SVHN_CLASSIFIER, recipes.svhn_classifier_net(width=8))
        checkpoints.save("wgan_gp_svhn", GAN(channels=3, latent_dim=100, width=8, image_size=32, d_norm=None).eval())
    out = recipes.evaluate("wgan_gp_svhn:heldout")
    net, accuracy = recipes.svhn_heldout_classifier()
    assert type(net).__name__ == "MLPClassifier" and net.standardize and not net.training
    x, y = recipes.load_svhn_data().test
    with torch.no_grad():
        probs = net(x).softmax(1)
        other = checkpoints.load(recipes.SVHN_CLASSIFIER)(x).argmax(1)
    assert accuracy == (probs.argmax(1) == y).float().mean().item()
    n = out["samples"]
    assert n == 256 and len(x) == 200      # the smoke split's held-out part is smaller than the sample count
    assert out["heldout_confident_real"] == round((probs.max(1).values >= 0.8).float().mean().item(), 4)
    assert out["agreement_real"] == round((probs.argmax(1) == other).float().mean().item(), 4)
    assert 0.0 <= out["heldout_confident"] <= 1.0 and 0.0 <= out["agreement"] <= 1.0
    assert "wgan_gp_svhn:heldout" in recipes.evaluations_of("wgan_gp_svhn")
    recipes.svhn_heldout_classifier.cache_clear()


def test_a_standardising_mlp_sees_each_image_at_zero_mean_and_unit_deviation():
    from helpers.nets import MLPClassifier
    net = MLPClassifier(in_features=12, hidden=4, standardize=True)
    x = torch.rand(5, 3, 2, 2)
    assert torch.allclose(net(x), net(3.0 * x + 0.5), atol=1e-3)       # invariant to each image's scale and shift
