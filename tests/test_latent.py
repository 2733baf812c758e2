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
