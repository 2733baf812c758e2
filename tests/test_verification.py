import math

import pytest
import torch
from torch import nn

from helpers import checkpoints, recipes
from helpers.data import DataMode, MNISTData
from helpers.verification import Verifier, kl_to_uniform, random_shift


class ConstantNet(nn.Module):
    """Says `digit` with probability `p` for every image, spreading the rest evenly."""

    def __init__(self, digit: int, p: float):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        probs = torch.full((10,), (1 - p) / 9)
        probs[digit] = p
        self.logits = probs.log()

    def forward(self, x):
        return self.logits.expand(len(x), 10) + 0 * self.dummy


class BrightnessNet(nn.Module):
    """Says digit round(9 * mean brightness) with certainty: lets tests build inputs of any class."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        digit = (x.mean(dim=(1, 2, 3)) * 9).round().long()
        return torch.nn.functional.one_hot(digit, 10).float() * 50 + 0 * self.dummy


def images_of(digits: torch.Tensor) -> torch.Tensor:
    """(N, C) digits -> (N, C, 28, 28) constant images that BrightnessNet reads as those digits."""
    return (digits.float() / 9).view(*digits.shape, 1, 1).expand(*digits.shape, 28, 28).contiguous()


def test_stacked_confidence_is_the_product_and_label_the_place_values():
    v = Verifier(ConstantNet(digit=3, p=0.9))
    result = v.classify(torch.zeros(4, 3, 28, 28))
    assert result.labels.tolist() == [333] * 4 and result.n_classes == 1000
    assert torch.allclose(result.confidence, torch.full((4,), 0.9 ** 3))
    assert result.predictability(0.73) == 0.0 and result.predictability(0.72) == 1.0
    assert v.predictability(torch.zeros(4, 3, 28, 28), tolerance=0.73).predictability == 0.0
    assert v.predictability(torch.zeros(4, 3, 28, 28), tolerance=0.72).predictability == 1.0


def test_predictability_accuracy_coverage_and_histogram_on_constructed_inputs():
    v = Verifier(BrightnessNet())
    digits = torch.tensor([[1, 2, 3], [1, 2, 3], [4, 0, 9], [7, 7, 7]])
    x = images_of(digits)
    labels = torch.tensor([321, 321, 904, 0])  # the last one is wrong on purpose
    result = v.predictability(x, labels, tolerance=0.9)
    assert result.predictability == 1.0 and result.accuracy == 0.75
    assert v.coverage(x) == pytest.approx(3 / 1000)
    result = v.classify(x)
    hist = result.mode_histogram()
    assert hist[321] == 2 and hist[904] == 1 and hist[777] == 1 and hist.sum() == 4
    assert result.modes() == 3 and result.accuracy(labels, 0.9) == 0.75
    mono = images_of(torch.arange(10).view(10, 1))
    assert v.coverage(mono) == 1.0
    assert v.classify(mono).kl_to_uniform() == pytest.approx(0.0, abs=1e-12)
    assert v.predictability(mono).accuracy is None


def test_mode_histogram_counts_every_sample_by_default_and_filters_by_tolerance():
    v = Verifier(ConstantNet(digit=7, p=0.6))
    result = v.classify(torch.zeros(5, 1, 28, 28))
    assert result.mode_histogram()[7] == 5 and result.modes() == 1          # argmax, no threshold
    assert result.mode_histogram(0.8).sum() == 0 and result.coverage() == 0.0   # IT3030's tolerance 0.8
    assert result.kl_to_uniform() == pytest.approx(math.log(10))


def test_kl_to_uniform_known_values():
    assert kl_to_uniform(torch.tensor([5, 5, 5, 5])) == pytest.approx(0.0)
    assert kl_to_uniform(torch.tensor([8, 0, 0, 0])) == pytest.approx(math.log(4))
    assert kl_to_uniform(torch.tensor([1, 1, 0, 0])) == pytest.approx(math.log(2))
    assert kl_to_uniform(torch.zeros(3)) == math.inf
    with pytest.raises(ValueError):
        kl_to_uniform(torch.tensor([-1, 2]))


@pytest.mark.parametrize("tolerance", [-0.1, 1.5, "high", True])
def test_bad_tolerance_is_a_clear_error(tolerance):
    v = Verifier(ConstantNet(0, 0.9))
    with pytest.raises(ValueError, match=r"tolerance must be a number in \[0, 1\]"):
        v.predictability(torch.zeros(2, 1, 28, 28), tolerance=tolerance)


def test_bad_images_and_labels_are_clear_errors():
    v = Verifier(ConstantNet(0, 0.9))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\) or \(N, 3, 28, 28\)"):
        v.coverage(torch.zeros(2, 2, 28, 28))
    with pytest.raises(TypeError, match="float"):
        v.coverage(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="labels must be a tensor of shape"):
        v.predictability(torch.zeros(2, 1, 28, 28), labels=torch.zeros(3, dtype=torch.long))


def test_random_shift_moves_whole_images_within_bounds():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0  # a centred square: never shifted out of the frame
    (shifted,) = random_shift((x,), g)
    assert shifted.shape == x.shape
    assert torch.equal(shifted.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))
    rows = shifted[:, 0].sum(2).argmax(1)  # first lit row
    assert rows.min() >= 8 and rows.max() <= 12 and len(set(rows.tolist())) > 1


# --- the shipped classifier on real data -------------------------------------------------------

needs_checkpoint = pytest.mark.skipif(not checkpoints.exists("verification_net"),
                                      reason="no shipped verification_net checkpoint")


@needs_checkpoint
def test_real_stacked_test_images_cover_almost_every_class():
    v = recipes.load_verifier(device="cpu")
    x, y = MNISTData(DataMode.COLOR_FLOAT_COMPLETE).get_full_data_set(training=False)
    assert v.coverage(x, tolerance=0.5) >= 0.99
    assert v.predictability(x, y).accuracy >= 0.95


@needs_checkpoint
def test_uniform_noise_is_almost_never_predictable():
    v = recipes.load_verifier(device="cpu")
    noise = torch.rand(2000, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert v.predictability(noise, tolerance=0.8).predictability < 0.05
    noise3 = torch.rand(2000, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    assert v.predictability(noise3, tolerance=0.5).predictability < 0.05


def test_noise_outliers_are_appended_with_the_outlier_label():
    from helpers.verification import OUTLIER, add_noise_outliers, classification_loss
    g = torch.Generator().manual_seed(0)
    x, y = torch.zeros(10, 1, 28, 28), torch.arange(10)
    x2, y2 = add_noise_outliers((x, y), g, fraction=0.3)
    assert x2.shape == (13, 1, 28, 28) and (y2[10:] == OUTLIER).all() and torch.equal(y2[:10], y)
    assert x2[10:].min() >= 0 and x2[10:].max() <= 1 and x2[10:].std() > 0.1
    # a net that outputs uniform probabilities pays log(10) on digits and nothing on outliers
    out = classification_loss(ConstantNet(0, 0.1), (x2, y2), outlier_weight=0.5)
    assert out["loss"].item() == pytest.approx(math.log(10), rel=1e-5)
    # a net sure of digit 0 pays KL(uniform || p) = -log(10) - mean_k log p_k on each outlier
    p = torch.full((10,), 0.01 / 9)
    p[0] = 0.99
    out = classification_loss(ConstantNet(0, 0.99), (x2, y2), outlier_weight=0.5)
    ce = -torch.log(p)[y].mean()
    kl = -torch.log(p).mean() - math.log(10)
    assert out["loss"].item() == pytest.approx((ce + 0.5 * kl).item(), rel=1e-5)


def test_the_verifier_keeps_no_state_and_leaves_the_callers_net_alone():
    net = BrightnessNet().train()
    calls = []
    v = Verifier(net)
    v.net.register_forward_hook(lambda *a: calls.append(1))
    x = images_of(torch.tensor([[3], [5]]))
    first = v.classify(x)
    assert first.labels.tolist() == [3, 5]
    x[0] = 1.0                                   # now a 9: a new question gets a new answer
    assert v.classify(x).labels.tolist() == [9, 5] and len(calls) == 2
    assert first.labels.tolist() == [3, 5]       # the first result is a value, not a view
    assert net.training and v.net is not net     # the caller's module is not switched or converted
    assert not hasattr(v, "_recent")
