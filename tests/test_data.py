import pytest
import torch

from helpers import data
from helpers.data import DataMode, MNISTData, contains_digit, stack_digits, validate_images

ALL_MODES = list(DataMode)
SMALL = dict(n_train=3000, n_test=1000)


def test_all_eight_combinations_exist():
    combos = {(m.color, m.binary, m.missing) for m in DataMode}
    assert len(combos) == 8 == len(DataMode)
    for m in DataMode:
        name = ("COLOR" if m.color else "MONO") + ("_BINARY" if m.binary else "_FLOAT") + \
               ("_MISSING" if m.missing else "_COMPLETE")
        assert m.name == name
        assert DataMode.of(color=m.color, binary=m.binary, missing=m.missing) is m


@pytest.mark.parametrize("mode", ALL_MODES, ids=lambda m: m.name)
def test_mode_shapes_values_and_labels(mode):
    d = MNISTData(mode, **SMALL)
    for training in (True, False):
        x, y = d.get_full_data_set(training)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (mode.channels, 28, 28) and len(x) == len(y)
        assert 0 <= y.min() and y.max() < mode.n_classes
        values = torch.unique(x)
        if mode.binary:
            assert set(values.tolist()) == {0.0, 1.0}
        else:
            assert values.min() >= 0 and values.max() <= 1 and len(values) > 200
        has8 = contains_digit(y, 8, mode.color)
        if training and mode.missing:
            assert not has8.any()
            assert len(x) < SMALL["n_train"]
        else:
            assert has8.any()
    assert len(d.get_full_data_set(False)[0]) == SMALL["n_test"]


def test_mono_counts_are_mnist():
    x, y = MNISTData(DataMode.MONO_FLOAT_COMPLETE).get_full_data_set(True)
    assert x.shape == (60_000, 1, 28, 28)
    assert torch.bincount(y).tolist()[:2] == [5923, 6742]
    xm, ym = MNISTData(DataMode.MONO_FLOAT_MISSING).get_full_data_set(True)
    assert len(xm) == 60_000 - 5851 and not (ym == 8).any()


def test_missing_removes_every_image_with_an_8_in_any_channel():
    complete = MNISTData(DataMode.COLOR_BINARY_COMPLETE, **SMALL).get_full_data_set(True)[1]
    missing = MNISTData(DataMode.COLOR_BINARY_MISSING, **SMALL).get_full_data_set(True)[1]
    digits = torch.stack([complete % 10, complete // 10 % 10, complete // 100], 1)
    assert len(missing) == int((digits != 8).all(1).sum())
    assert torch.equal(missing, complete[(digits != 8).all(1)])


def test_stacked_label_arithmetic_on_constructed_digits():
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1).expand(50, 28, 28).contiguous()
    labels = torch.arange(50) % 10
    stacked, stacked_labels = stack_digits(images, labels, n=200, seed=3)
    assert stacked.shape == (200, 3, 28, 28)
    source = stacked[:, :, 0, 0].long()             # which mono image each channel came from
    expected = labels[source[:, 0]] + 10 * labels[source[:, 1]] + 100 * labels[source[:, 2]]
    assert torch.equal(stacked_labels, expected)


def test_stacked_channels_are_real_mnist_digits_with_their_labels():
    mono_x, mono_y = data.load_mnist(train=False)
    x, y = MNISTData(DataMode.COLOR_FLOAT_COMPLETE, **SMALL).raw(training=False)
    flat = mono_x.view(len(mono_x), -1)
    for i in range(5):
        for c, place in enumerate((1, 10, 100)):
            match = (flat == x[i, c].reshape(1, -1)).all(1).nonzero()
            assert len(match) >= 1
            assert (y[i] // place % 10) in mono_y[match[:, 0]].tolist()


def test_stacked_is_deterministic_in_its_seed():
    a = MNISTData(DataMode.COLOR_FLOAT_COMPLETE, seed=7, **SMALL).get_full_data_set(True)
    b = MNISTData(DataMode.COLOR_FLOAT_COMPLETE, seed=7, **SMALL).get_full_data_set(True)
    c = MNISTData(DataMode.COLOR_FLOAT_COMPLETE, seed=8, **SMALL).get_full_data_set(True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # train and test images of one seed are drawn independently
    test = MNISTData(DataMode.COLOR_FLOAT_COMPLETE, seed=7, **SMALL).get_full_data_set(False)
    assert not torch.equal(test[1][:100], a[1][:100])


def test_stacked_size_is_a_parameter():
    d = MNISTData(DataMode.COLOR_FLOAT_COMPLETE, n_train=123, n_test=45)
    assert len(d.get_full_data_set(True)[0]) == 123 and len(d.get_full_data_set(False)[0]) == 45


def test_batch_generator_and_loader_cover_the_data_once():
    d = MNISTData(DataMode.COLOR_BINARY_COMPLETE, n_train=1000, n_test=300)
    batches = list(d.batch_generator(training=False, batch_size=128))
    assert [len(b[0]) for b in batches] == [128, 128, 44]
    x, y = d.get_full_data_set(False)
    got = torch.cat([b[1] for b in batches])
    assert sorted(got.tolist()) == sorted(y.tolist())
    xb, yb = next(iter(d.loader(training=True, batch_size=32)))
    assert xb.shape == (32, 3, 28, 28) and yb.shape == (32,)
    with pytest.raises(ValueError, match="batch_size"):
        next(d.batch_generator(batch_size=0))


def test_smoke_mode_uses_small_subsets(smoke):
    d = MNISTData(DataMode.COLOR_FLOAT_COMPLETE)
    assert len(d.get_full_data_set(True)[0]) == data.SMOKE_TRAIN


def test_unknown_mode_is_a_clear_error():
    assert DataMode.parse("color_float_missing") is DataMode.COLOR_FLOAT_MISSING
    with pytest.raises(ValueError, match="MONO_BINARY_COMPLETE"):
        DataMode.parse("mono_grey")
    with pytest.raises(ValueError, match="unknown data mode"):
        MNISTData(3)


@pytest.mark.parametrize("bad, error, words", [
    ([[0.0]], TypeError, "torch.Tensor"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), TypeError, "float"),
    (torch.zeros(2, 28, 28), ValueError, r"\(N, 1, 28, 28\)"),
    (torch.zeros(2, 2, 28, 28), ValueError, "shape"),
    (torch.zeros(2, 1, 32, 32), ValueError, "shape"),
    (torch.full((2, 1, 28, 28), 255.0), ValueError, r"\[0, 1\]"),
])
def test_validate_images_errors(bad, error, words):
    with pytest.raises(error, match=words):
        validate_images(bad)


def test_missing_dataset_names_folder_variable_and_download_error(tmp_path, monkeypatch):
    import torchvision

    def refuse(self, *a, **k):
        raise OSError("network unreachable")
    # the download itself fails here whatever the network; the error must say so plainly
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", refuse)
    monkeypatch.setenv("DGM_DATA_DIR", str(tmp_path / "nowhere"))
    data._load_mnist_cached.cache_clear()
    with pytest.raises(data.DatasetNotFoundError) as info:
        MNISTData(DataMode.MONO_BINARY_COMPLETE).get_full_data_set()
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "DGM_DATA_DIR" in message
    assert "network unreachable" in message


def test_a_callers_in_place_edit_does_not_reach_anyone_else():
    d = MNISTData(DataMode.MONO_FLOAT_COMPLETE, **SMALL)
    images, labels = d.raw(training=False)
    images.zero_(), labels.fill_(3)
    again, labels_again = MNISTData(DataMode.MONO_FLOAT_COMPLETE, **SMALL).raw(training=False)
    assert again.float().sum() > 0 and (labels_again != 3).any()
    x, _ = d.get_full_data_set(training=False)
    x.fill_(0.5)
    assert not torch.equal(d.get_full_data_set(training=False)[0], x)
    raw_images, _ = data.load_mnist(train=False)
    raw_images.zero_()
    assert data.load_mnist(train=False)[0].float().sum() > 0


def test_a_corrupt_file_is_not_reported_as_a_failed_download(tmp_path, monkeypatch):
    import torchvision

    def corrupt(self, *a, **k):
        raise ValueError("unexpected end of data in train-images-idx3-ubyte")
    downloads = []
    monkeypatch.setattr(torchvision.datasets.MNIST, "_load_data", corrupt)
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", lambda self: downloads.append(1))
    data._load_mnist_cached.cache_clear()
    try:
        with pytest.raises(data.DatasetCorruptError, match="unexpected end of data.*copy the files again"):
            data.load_mnist(train=True)
    finally:
        data._load_mnist_cached.cache_clear()
    assert downloads == []


def test_split_validation_takes_the_last_rows_and_checks_its_input(monkeypatch):
    x, y = torch.arange(60).view(60, 1), torch.arange(60)
    (xt, yt), (xv, yv) = data.split_validation(x, y, n_val=10)
    assert torch.equal(xv[:, 0], torch.arange(50, 60)) and torch.equal(yt, torch.arange(50))
    with pytest.raises(ValueError, match="differ in length"):
        data.split_validation(x, y[:5], n_val=2)
    with pytest.raises(ValueError, match="n_val"):
        data.split_validation(x, n_val=60)
    monkeypatch.setenv("DGM_SMOKE", "1")
    (_,), (xv,) = data.split_validation(x, n_val=10_000)
    assert len(xv) == 10                                      # a sixth of a smoke-size set


def test_keep_freed_memory_is_safe_to_call_twice():
    import platform

    from helpers import settings
    first, second = settings.keep_freed_memory(), settings.keep_freed_memory()
    assert first == second
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert first is True
