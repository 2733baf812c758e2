"""What lives in a latent space: encodings, PCA, interpolation, per-dimension perturbation.

Works for any model with `encode(x)` (N, C, H, W) -> (N, L) and/or `decode(z)` (N, L) -> (N, C, H, W)
(an AE, a VAE, a GAN's generator wrapped with a `decode`).
"""
from __future__ import annotations

import torch
from sklearn.decomposition import PCA


@torch.no_grad()
def encode(model, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """(N, C, H, W) -> (N, L) codes (for a VAE the encoder means mu(x)), on the CPU."""
    return torch.cat([model.encode(b).cpu() for b in x.split(batch_size)])


def pca(codes: torch.Tensor, n_components: int = 2) -> tuple[torch.Tensor, torch.Tensor, PCA]:
    """Principal components of codes U (N, K) with scikit-learn: the projection (N, n_components),
    the explained-variance ratio of each component (n_components,) and the fitted `PCA` (whose
    `components_` (n_components, K) are the directions in latent space)."""
    if codes.dim() != 2 or not 1 <= n_components <= min(codes.shape):
        raise ValueError(f"codes must be (N, K) with n_components <= min(N, K), got {tuple(codes.shape)} "
                         f"and n_components = {n_components}")
    fitted = PCA(n_components=n_components).fit(codes.double().numpy())
    projected = torch.from_numpy(fitted.transform(codes.double().numpy())).float()
    return projected, torch.from_numpy(fitted.explained_variance_ratio_).float(), fitted


def interpolate(start: torch.Tensor, end: torch.Tensor, weights: torch.Tensor | None = None,
                steps: int = 11) -> torch.Tensor:
    """Straight-line points (1 - w) start + w end for w in `weights` (default `steps` values evenly
    from 0 to 1): start, end (...) -> (len(weights), ...). The first point is `start` and the last
    `end` exactly. Codes interpolate in latent space, images in data space."""
    if start.shape != end.shape:
        raise ValueError(f"start and end differ in shape: {tuple(start.shape)} vs {tuple(end.shape)}")
    w = torch.linspace(0, 1, steps) if weights is None else torch.as_tensor(weights, dtype=start.dtype)
    w = w.to(start.device).view(-1, *([1] * start.dim()))
    return (1 - w) * start + w * end


def moment_kl(u: torch.Tensor) -> float:
    """KL(N(m, S) || N(0, I)) of the Gaussian N(m, S) fitted to codes u (N, L) by their mean and
    covariance: 1/2 (tr S + |m|^2 - L - log det S), in nats. Zero when the first two moments match
    N(0, I); blind to anything beyond them; biased upwards for finite N (N >= L + 1 needed)."""
    if u.dim() != 2 or len(u) <= u.shape[1]:
        raise ValueError(f"u must be (N, L) with N > L, got {tuple(u.shape)}")
    u = u.double()
    mean, cov = u.mean(0), torch.cov(u.T)
    return 0.5 * (torch.trace(cov) + mean @ mean - u.shape[1] - torch.logdet(cov)).item()


@torch.no_grad()
def dimension_sweeps(model, z: torch.Tensor, dims, epsilons: torch.Tensor) -> dict[int, torch.Tensor]:
    """For one code z (L,) and each dimension i in `dims`, the images decoded at z + eps e_i for
    every eps in `epsilons` (E,): {i: (E, C, H, W)} on the CPU. With eps = 0 among the epsilons
    that column is decode(z) itself."""
    if z.dim() != 1:
        raise ValueError(f"z must be one code (L,), got {tuple(z.shape)}")
    epsilons = torch.as_tensor(epsilons, dtype=z.dtype, device=z.device)
    out = {}
    for i in dims:
        shifted = z.unsqueeze(0).repeat(len(epsilons), 1)
        shifted[:, int(i)] += epsilons
        out[int(i)] = model.decode(shifted).cpu()
    return out


@torch.no_grad()
def interpolation_paths(model, z_a: torch.Tensor, z_b: torch.Tensor, alphas: torch.Tensor,
                        scores: dict) -> dict[str, dict[str, list[float]]]:
    """IFT6135 Problem 3's latent against data interpolation, scored: for pairs of codes z_a, z_b
    (N, L) and each alpha, the mean of every score (name -> function of images (N, C, H, W) -> (N,))
    on (a) decode(alpha z_a + (1 - alpha) z_b) and (b) alpha decode(z_a) + (1 - alpha) decode(z_b).
    Returns {"latent": {name: [...]}, "data": {name: [...]}}, one value per alpha."""
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"z_a and z_b must be (N, L) of equal shape, got {tuple(z_a.shape)}, {tuple(z_b.shape)}")
    device = next(model.parameters()).device
    x_a, x_b = model.decode(z_a.to(device)).cpu(), model.decode(z_b.to(device)).cpu()
    out = {space: {name: [] for name in scores} for space in ("latent", "data")}
    for a in torch.as_tensor(alphas).tolist():
        images = {"latent": model.decode((a * z_a + (1 - a) * z_b).to(device)).cpu(), "data": a * x_a + (1 - a) * x_b}
        for space, x in images.items():
            for name, score in scores.items():
                out[space][name].append(score(x).float().mean().item())
    return out


@torch.no_grad()
def interpolation_confidence(model, verifier, z_a: torch.Tensor, z_b: torch.Tensor,
                             alphas: torch.Tensor) -> dict[str, list[float]]:
    """`interpolation_paths` scored by the verifier's top-digit confidence alone: {"latent": [...],
    "data": [...]}, one mean confidence per alpha. verifier: anything with
    `classify(images).confidence`."""
    paths = interpolation_paths(model, z_a, z_b, alphas, {"c": lambda x: verifier.classify(x).confidence})
    return {space: scores["c"] for space, scores in paths.items()}


def distinct_confident_pairs(confidence: torch.Tensor, digit: torch.Tensor, k: int = 2) -> list[tuple[int, int]]:
    """k pairs of indices for interpolation figures: each pairs the most confidently classified
    unused sample with the most confident unused one of another digit (of the same digit when no
    other is left, e.g. for an untrained model). confidence, digit: (N,). ValueError when fewer
    than 2k samples are given."""
    if len(confidence) < 2 * k:
        raise ValueError(f"cannot find {k} pairs among {len(confidence)} samples")
    order, used, pairs = confidence.argsort(descending=True).tolist(), set(), []
    for _ in range(k):
        first = next(i for i in order if i not in used)
        rest = [i for i in order if i not in used and i != first]
        second = next((i for i in rest if digit[i] != digit[first]), rest[0])
        used |= {first, second}
        pairs.append((first, second))
    return pairs


@torch.no_grad()
def perturb_dimensions(model, z: torch.Tensor, epsilon: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """IFT6135 Problem 3's disentanglement probe: for one code z (L,), decode z + epsilon e_i for
    every dimension i. Returns the images (L, C, H, W) and how much each changed the image, the mean
    absolute pixel difference from decode(z) (L,), so the dimensions that do something can be picked."""
    if z.dim() != 1:
        raise ValueError(f"z must be one code (L,), got {tuple(z.shape)}")
    shifted = z.unsqueeze(0) + epsilon * torch.eye(len(z), device=z.device, dtype=z.dtype)   # (L, L)
    base = model.decode(z.unsqueeze(0)).cpu()
    images = model.decode(shifted).cpu()
    return images, (images - base).abs().flatten(1).mean(1)


@torch.no_grad()
def decode_grid(model, limits, n: int = 15) -> torch.Tensor:
    """The decoded 2-D latent plane: an n x n grid of codes evenly spaced within
    limits ((z1_lo, z1_hi), (z2_lo, z2_hi)), decoded to (n * n, C, H, W) in reading order: the first
    row has the largest z2, each row runs from the smallest z1 to the largest (as on a scatter plot)."""
    (x_lo, x_hi), (y_lo, y_hi) = limits
    if not (x_lo < x_hi and y_lo < y_hi) or n < 2:
        raise ValueError(f"limits must be ((lo, hi), (lo, hi)) with lo < hi and n >= 2, got {limits}, n = {n}")
    z1 = torch.linspace(x_lo, x_hi, n)
    z2 = torch.linspace(y_hi, y_lo, n)
    codes = torch.stack(torch.meshgrid(z2, z1, indexing="ij")[::-1], dim=-1).reshape(n * n, 2)
    return model.decode(codes).cpu()


def knn_accuracy(train_codes: torch.Tensor, train_labels: torch.Tensor, test_codes: torch.Tensor,
                 test_labels: torch.Tensor, k: int = 10) -> float:
    """How well the digit can be read off a code: the test accuracy of a k-nearest-neighbour
    classifier (scikit-learn, Euclidean) fitted on training codes (N, L) and labels (N,)."""
    from sklearn.neighbors import KNeighborsClassifier
    if train_codes.shape[1] != test_codes.shape[1] or len(train_codes) != len(train_labels) \
            or len(test_codes) != len(test_labels):
        raise ValueError(f"codes and labels do not match: train {tuple(train_codes.shape)} / {len(train_labels)}, "
                         f"test {tuple(test_codes.shape)} / {len(test_labels)}")
    knn = KNeighborsClassifier(n_neighbors=k).fit(train_codes.numpy(), train_labels.numpy())
    return float(knn.score(test_codes.numpy(), test_labels.numpy()))


def active_units(means: torch.Tensor, threshold: float = 0.01) -> tuple[torch.Tensor, int]:
    """Burda, Grosse and Salakhutdinov's (2016) activity of each latent dimension u: the variance
    over the data of its posterior mean, Var_x(E_q(u|x)[u]), from encoder means (N, L). A dimension
    is active when this exceeds `threshold` (their 0.01). Returns the activities (L,) and the count."""
    if means.dim() != 2 or len(means) < 2:
        raise ValueError(f"means must be (N, L) with N >= 2, got {tuple(means.shape)}")
    activity = means.double().var(dim=0, unbiased=True).float()
    return activity, int((activity > threshold).sum())


@torch.no_grad()
def posterior_means_and_prior(model, x: torch.Tensor, n_prior: int, generator: torch.Generator | None = None,
                              n_components: int = 2) -> dict[str, torch.Tensor]:
    """The aggregate posterior against the prior, in one 2-D view (notebook 08): the encoder means
    mu(x) of images x (N, C, H, W) and n_prior codes z ~ p(z) (the model's own prior, drawn with
    `generator`), both projected onto the first `n_components` principal components of the means.
    Returns {"means": (N, n_components), "prior": (n_prior, n_components), "explained": (n_components,)
    variance ratios of the means}; the same linear map for both, so they can share axes."""
    means = encode(model, x)
    projected, explained, fitted = pca(means, n_components)
    codes = model.prior.sample(n_prior, generator, device=model.device).cpu()
    prior = torch.from_numpy(fitted.transform(codes.double().numpy())).float()
    return {"means": projected, "prior": prior, "explained": explained}
