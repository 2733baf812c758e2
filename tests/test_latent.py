"""Latent-space helpers against closed forms and scikit-learn."""
import numpy as np
import pytest
import torch

from helpers import latent
from helpers.models import VAE


def test_interpolation_endpoints_equal_the_inputs_and_points_are_on_the_line():
    a, b = torch.randn(3, 5), torch.randn(3, 5)
    path = latent.interpolate(a, b, steps=11)
    assert path.shape == (11, 3, 5)
    assert torch.equal(path[0], a) and torch.allclose(path[-1], b)
    assert torch.allclose(path[5], (a + b) / 2, atol=1e-6)
    custom = latent.interpolate(a, b, weights=torch.tensor([0.0, 0.25]))
    assert torch.allclose(custom[1], 0.75 * a + 0.25 * b)
    with pytest.raises(ValueError, match="differ in shape"):
        latent.interpolate(a, b[:2])


def test_pca_projection_shapes_and_variance_match_numpy():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(1000, 12, generator=g) * torch.linspace(5, 0.1, 12)
    projected, ratio, fitted = latent.pca(codes, 2)
    assert projected.shape == (1000, 2) and ratio.shape == (2,) and fitted.components_.shape == (2, 12)
    centred = codes.double().numpy() - codes.double().numpy().mean(0)
    eig = np.sort(np.linalg.eigvalsh(np.cov(centred.T)))[::-1]
    assert np.allclose(ratio.numpy(), eig[:2] / eig.sum(), atol=1e-5)
    assert ratio[0] > ratio[1]
    with pytest.raises(ValueError, match="n_components"):
        latent.pca(codes, 13)


def test_perturbation_changes_one_dimension_at_a_time():
    torch.manual_seed(0)
    vae = VAE(channels=1, latent_dim=4, width=4).eval()
    z = torch.zeros(4)
    images, change = latent.perturb_dimensions(vae, z, epsilon=3.0)
    assert images.shape == (4, 1, 28, 28) and change.shape == (4,) and (change > 0).all()
    expected = vae.decode(torch.eye(4) * 3.0)
    assert torch.allclose(images, expected, atol=1e-6)
    with pytest.raises(ValueError, match="one code"):
        latent.perturb_dimensions(vae, torch.zeros(2, 4))


class _CodeEcho:
    """A 'decoder' whose image is constant: the first pixel row holds z1, the rest z2."""
    def decode(self, z):
        img = z[:, 1].view(-1, 1, 1, 1).expand(-1, 1, 28, 28).clone()
        img[:, :, 0] = z[:, 0].view(-1, 1, 1)
        return img


def test_decode_grid_reads_like_a_scatter_plot():
    images = latent.decode_grid(_CodeEcho(), ((-1.0, 1.0), (0.0, 4.0)), n=3)
    assert images.shape == (9, 1, 28, 28)
    z1, z2 = images[:, 0, 0, 0].view(3, 3), images[:, 0, 5, 5].view(3, 3)
    assert torch.allclose(z1, torch.tensor([-1.0, 0.0, 1.0]).expand(3, 3))          # across a row: z1 grows
    assert torch.allclose(z2, torch.tensor([[4.0], [2.0], [0.0]]).expand(3, 3))    # down the rows: z2 falls
    with pytest.raises(ValueError, match="lo < hi"):
        latent.decode_grid(_CodeEcho(), ((1.0, -1.0), (0.0, 1.0)))


def test_knn_accuracy_against_a_hand_written_nearest_neighbour():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    y_train, y_test = torch.arange(300) % 3, torch.arange(90) % 3
    train = centres[y_train] + torch.randn(300, 2, generator=g)
    test = centres[y_test] + torch.randn(90, 2, generator=g)
    nearest = y_train[torch.cdist(test, train).argmin(1)]                               # 1-NN by hand
    expected = (nearest == y_test).float().mean().item()
    assert latent.knn_accuracy(train, y_train, test, y_test, k=1) == pytest.approx(expected)
    with pytest.raises(ValueError, match="do not match"):
        latent.knn_accuracy(train, y_train[:10], test, y_test)


def test_active_units_is_the_variance_of_the_posterior_means():
    g = torch.Generator().manual_seed(1)
    means = torch.randn(500, 4, generator=g) * torch.tensor([1.0, 0.5, 0.05, 0.001])
    activity, count = latent.active_units(means)
    assert torch.allclose(activity.double(), torch.from_numpy(means.numpy().var(axis=0, ddof=1)).double(), rtol=1e-5)
    assert count == 2                                                                   # 0.05^2 = 0.0025 < 0.01
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        latent.active_units(torch.zeros(5))
