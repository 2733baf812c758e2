"""The Fréchet distance of features (`frechet.calculate_fid_score`) against closed forms, an
eigen-decomposition reference and pytorch-fid's `calculate_frechet_distance`, and its errors."""
import numpy as np
import pytest
import scipy.linalg
import torch

from helpers import frechet
from helpers.frechet import calculate_fid_score, feature_moments, frechet_distance


def exact_moment_features(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> np.ndarray:
    """(n, d) rows whose sample mean is exactly `mean` and sample covariance (n - 1) exactly `cov`."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z.T)).T)        # sample covariance exactly I
    return z @ np.linalg.cholesky(cov).T + mean


def random_cov(d: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def eigen_reference(mu1, s1, mu2, s2) -> float:
    """d^2 with Tr (S1 S2)^(1/2) = sum of sqrt eigenvalues of S1^(1/2) S2 S1^(1/2) (symmetric, numpy eigh)."""
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    e = np.linalg.eigvalsh(root @ s2 @ root)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(e, 0, None)).sum())


def test_two_gaussians_with_diagonal_covariances_give_the_closed_form():
    d = 6
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.2, 3.0, d), rng.uniform(0.2, 3.0, d)
    closed = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(closed, rel=1e-10)
    x = exact_moment_features(300, mu1, np.diag(s1), seed=1)
    y = exact_moment_features(500, mu2, np.diag(s2), seed=2)
    fid = calculate_fid_score(iter(torch.from_numpy(x).split(64)), iter(torch.from_numpy(y).split(100)))
    assert fid == pytest.approx(closed, rel=1e-9)


def test_one_dimension_is_mean_and_standard_deviation_gap():
    # d^2 = (m1 - m2)^2 + (sd1 - sd2)^2 for two 1-D Gaussians
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0, rel=1e-12)


def test_full_covariances_agree_with_an_eigen_decomposition_reference():
    rng = np.random.default_rng(3)
    for d in (2, 5, 16):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = random_cov(d, rng), random_cov(d, rng)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(eigen_reference(mu1, s1, mu2, s2), rel=1e-8)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")  # pytorch-fid on SciPy >= 1.16
def test_agrees_with_pytorch_fid_on_random_features():
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 20)) @ rng.normal(size=(20, 20)) + 1.0
    y = rng.gamma(2.0, size=(300, 20)) @ rng.normal(size=(20, 20))
    ours = calculate_fid_score([torch.from_numpy(x)], [torch.from_numpy(y)])
    theirs = fid_score.calculate_frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_symmetric_zero_on_itself_and_independent_of_batching():
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.normal(size=(257, 12)) * 3 + 100.0)      # a large mean: the update must not cancel
    y = torch.from_numpy(rng.standard_t(4, size=(190, 12)) + 99.0)
    forward = calculate_fid_score(x.split(50), y.split(7))
    assert calculate_fid_score(y.split(190), x.split(1)) == pytest.approx(forward, rel=1e-9)
    assert calculate_fid_score([x], [y]) == pytest.approx(forward, rel=1e-9)
    assert abs(calculate_fid_score(x.split(10), [x])) < 1e-8
    m = feature_moments(x.split(13))
    assert np.allclose(m.mean, x.mean(0).numpy(), rtol=0, atol=1e-10)
    assert np.allclose(m.cov, np.cov(x.numpy(), rowvar=False), rtol=1e-10, atol=1e-10)
    assert m.n == 257


def test_float32_batches_and_numpy_arrays_are_accepted():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(100, 4))
    y = rng.normal(size=(120, 4)) + 0.5
    a = calculate_fid_score([torch.from_numpy(x).float()], [torch.from_numpy(y).float()])
    b = calculate_fid_score([x.astype(np.float32)], (r for r in [y.astype(np.float32)]))
    assert a == pytest.approx(b, rel=1e-12)


@pytest.mark.parametrize("samples, test, words", [
    ([torch.randn(10, 10)], [torch.randn(50, 10)], "needs more than 10 samples"),
    ([torch.randn(50, 10)], [torch.randn(8, 10)], "test_features: 8 feature vectors"),
    ([], [torch.randn(50, 3)], "no features"),
    ([torch.randn(50, 3), torch.randn(5, 4)], [torch.randn(50, 3)], "has 4 features"),
    ([torch.randn(50, 3)], [torch.randn(50, 4)], "3 dimensions, test features 4"),
    ([torch.randn(50)], [torch.randn(50, 3)], "(B, d) matrix"),
    ([torch.full((50, 3), float("nan"))], [torch.randn(50, 3)], "NaN"),
])
def test_bad_features_are_clear_errors(samples, test, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        calculate_fid_score(samples, test)


def test_a_large_imaginary_part_is_an_error():
    # a "covariance" with a negative eigenvalue: its square root has an imaginary unit on the diagonal
    with pytest.raises(ValueError, match="imaginary part"):
        frechet_distance(np.zeros(2), np.diag([-1.0, 1.0]), np.zeros(2), np.eye(2))


def test_a_non_finite_square_root_is_retried_with_eps_on_the_diagonals(monkeypatch):
    calls = []
    real_sqrtm = scipy.linalg.sqrtm

    def flaky(a, *args, **kwargs):
        calls.append(a.copy())
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)
    monkeypatch.setattr(scipy.linalg, "sqrtm", flaky)
    s1, s2 = np.diag([1.0, 2.0]), np.diag([3.0, 0.5])
    fid = frechet_distance(np.zeros(2), s1, np.ones(2), s2)
    offset = np.eye(2) * frechet.FID_EPS
    assert len(calls) == 2 and np.allclose(calls[1], (s1 + offset) @ (s2 + offset), rtol=0, atol=1e-15)
    expected = 2 + (1 + 3 - 2 * np.sqrt(3)) + (2 + 0.5 - 2 * 1.0)
    assert fid == pytest.approx(expected, abs=1e-5)


def test_feature_batches_feed_the_score_without_gradients():
    net = torch.nn.Linear(6, 3)
    x = torch.randn(70, 6)
    batches = list(frechet.feature_batches(net, x, batch_size=32))
    assert [len(b) for b in batches] == [32, 32, 6]
    assert not any(b.requires_grad for b in batches)
    assert torch.allclose(torch.cat(batches), net(x).detach())
    with pytest.raises(ValueError, match="batch_size"):
        list(frechet.feature_batches(net, x, batch_size=0))


def test_verifier_features_are_the_nets_penultimate_layer_per_channel():
    from helpers.nets import DigitClassifier
    from helpers.verification import Verifier
    net = DigitClassifier(width=8).eval()
    verifier = Verifier(net)
    x = torch.rand(5, 3, 28, 28)
    f = verifier.features(x)
    assert f.shape == (5, 3 * 128)
    with torch.no_grad():
        green = net.features(x[:, 1:2])
    assert torch.allclose(f[:, 128:256], green, atol=1e-5)
    assert verifier.features(x[:, :1]).shape == (5, 128)
    with pytest.raises(ValueError, match="shape"):
        verifier.features(torch.rand(5, 1, 32, 32))


def test_sharpness_is_the_mean_absolute_laplacian_inside_the_border():
    from scipy import ndimage
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 10, 10, generator=g)
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).double().numpy()
    expected = [np.abs(ndimage.laplace(img)[1:-1, 1:-1]).mean() for img in grey]
    assert torch.allclose(frechet.sharpness(x).double(), torch.tensor(expected), atol=1e-5)
    flat = torch.full((2, 1, 8, 8), 0.3)
    assert torch.allclose(frechet.sharpness(flat), torch.zeros(2), atol=1e-6)     # no edges, no response
    with pytest.raises(ValueError, match="images must be"):
        frechet.sharpness(torch.rand(2, 2, 8, 8))


def test_mean_pairwise_distance_matches_scipy_pdist():
    from scipy.spatial.distance import pdist
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(1))
    assert frechet.mean_pairwise_distance(x) == pytest.approx(pdist(x.double().numpy()).mean(), rel=1e-9)
    with pytest.raises(ValueError, match="N >= 2"):
        frechet.mean_pairwise_distance(torch.randn(1, 5))
