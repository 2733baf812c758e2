"""Figures: image grids, labelled rows, training curves, confusion matrices."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.metrics import confusion_matrix

from .data import validate_images


def to_numpy_images(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, H, W) for C = 1 or (N, H, W, 3) for C = 3, as numpy."""
    validate_images(images, size=images.shape[-1] if images.dim() == 4 else 28)
    arr = images.detach().cpu().float().numpy()
    return arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)


def show_images(images: torch.Tensor, titles: Sequence | None = None, ncols: int = 10,
                title: str | None = None, scale: float = 1.0, axes_off: bool = True):
    """Plot (N, C, H, W) images in a grid of `ncols` columns, with optional per-image titles.
    Returns the matplotlib Figure."""
    arr = to_numpy_images(images)
    n = len(arr)
    ncols = max(1, min(ncols, n))
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * 1.1 * ncols, scale * (1.1 if titles is None else 1.35) * nrows),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            ax.imshow(arr[i], cmap="gray" if arr.ndim == 3 else None, vmin=0, vmax=1, interpolation="nearest")
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
        if axes_off:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def readings(classifier, images: torch.Tensor) -> list[str]:
    """A title per image (N, C, S, S) from a classifier's `classify` (e.g. the verification net):
    its digit in each channel (R, G, B for stackedMNIST) and, in brackets, the lowest of their
    confidences."""
    seen = classifier.classify(images)
    return ["".join(map(str, d.tolist())) + f" ({c.min():.2f})" for d, c in zip(seen.digits, seen.digit_confidence)]


def show_rows(rows: dict[str, torch.Tensor], ncols: int | None = None, scale: float = 1.0,
              column_titles: Sequence[str] | None = None, image_titles: dict[str, Sequence[str]] | None = None):
    """One row of images per entry {row label: (N, C, H, W)}, e.g. originals above reconstructions;
    column_titles: a title above each column of the first row (e.g. the perturbation epsilon);
    image_titles: {row label: a title per image} (e.g. `readings`), over column_titles."""
    ncols = ncols or max(len(v) for v in rows.values())
    height = 1.3 if image_titles else 1.05
    fig, axes = plt.subplots(len(rows), ncols, figsize=(scale * 1.0 * ncols + 1.2, scale * height * len(rows)),
                             squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        arr = to_numpy_images(images[:ncols])
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(arr):
                ax.imshow(arr[c], cmap="gray" if arr.ndim == 3 else None, vmin=0, vmax=1, interpolation="nearest")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    for c, title in enumerate((column_titles or [])[:ncols]):
        axes[0, c].set_title(title, fontsize=8)
    for r, label in enumerate(rows):
        for c, title in enumerate(list((image_titles or {}).get(label, []))[:ncols]):
            axes[r, c].set_title(title, fontsize=7)
    fig.tight_layout()
    return fig


def plot_history(history, keys: Sequence[str] = ("train_loss", "val_loss"), ax=None, title: str | None = None,
                 ylabel: str = "value", labels: Sequence[str] | None = None):
    """Per-epoch curves of `keys` from a `training.History` or its dict form, with the best epoch
    (where early stopping kept the weights) marked when there is one."""
    epochs = history["epochs"] if isinstance(history, dict) else history.epochs
    best = history.get("best_epoch") if isinstance(history, dict) else history.best_epoch
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for key, label in zip(keys, labels or keys):
        xs = [e["epoch"] for e in epochs if key in e]
        ax.plot(xs, [e[key] for e in epochs if key in e], marker="o", ms=3, label=label)
    if best:
        ax.axvline(best, color="k", ls=":", lw=1, label=f"best epoch {best}")
    ax.set_xlabel("epoch"), ax.set_ylabel(ylabel)
    ax.legend()
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


def plot_confusion(true: torch.Tensor, predicted: torch.Tensor, n_classes: int = 10, ax=None, title: str | None = None):
    """Confusion matrix (rows: true class, columns: predicted) with counts
    (`sklearn.metrics.confusion_matrix`); the off-diagonal errors are shaded, the diagonal written in blue."""
    cm = torch.from_numpy(confusion_matrix(true.numpy(), predicted.numpy(), labels=list(range(n_classes))))
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 4.6))
    off = cm.clone().float()
    off.fill_diagonal_(float("nan"))
    ax.imshow(off.numpy(), cmap="Reds")
    for i in range(n_classes):
        for j in range(n_classes):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="black" if i != j else "tab:blue")
    ax.set_xticks(range(n_classes)), ax.set_yticks(range(n_classes))
    ax.set_xlabel("predicted class"), ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    return cm


def plot_elbo_curves(meta: dict, ax=None, objective: str = "ELBO", reference: tuple[float, str] | None = None,
                     from_epoch: int = 1):
    """Per-epoch `objective` (minus the logged loss; "ELBO" unless the recipe optimises something
    else) on training and validation data from a checkpoint's manifest entry, with the best epoch
    marked. The training curve is the objective on the whole training set after each epoch where the
    recipe recorded it ("train_set_loss"), else the running mean over the epoch's minibatches (the
    weights change while it is computed). reference: (value, label) drawn as a horizontal line (e.g.
    a sheet's threshold); from_epoch: the first epoch drawn (a first epoch far below the rest would
    squash the axis)."""
    epochs = [e for e in meta["history"]["epochs"] if e["epoch"] >= from_epoch]
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    xs = [e["epoch"] for e in epochs]
    if all("train_set_loss" in e for e in epochs):
        ax.plot(xs, [-e["train_set_loss"] for e in epochs], "o-", ms=3, label="training set (after the epoch)")
    else:
        ax.plot(xs, [-e["train_loss"] for e in epochs], "o-", ms=3, label="training (running minibatch mean)")
    ax.plot(xs, [-e["val_loss"] for e in epochs], "o-", ms=3, label="validation set (after the epoch)")
    best = meta["history"].get("best_epoch")
    if best:
        ax.axvline(best, color="k", ls=":", lw=1, label=f"best epoch {best}")
    if reference is not None:
        ax.axhline(reference[0], color="tab:red", ls="--", lw=1, label=reference[1])
    ax.set_xlabel("epoch"), ax.set_ylabel(f"{objective} per image (nats)")
    ax.legend(), ax.grid(alpha=0.3)
    return ax


def pairs_grid(originals: torch.Tensor, partners: torch.Tensor, pairs_per_row: int = 4, title: str | None = None,
               names: tuple[str, str] = ("test image", "reconstruction")):
    """Images (N, C, H, W) beside their partners (N, C, H, W), `pairs_per_row` pairs a row: 32 pairs
    make the 8-by-8 grid of 2AMU20 Task 1d. Returns the Figure."""
    if originals.shape != partners.shape:
        raise ValueError(f"originals and partners differ in shape: {tuple(originals.shape)} vs {tuple(partners.shape)}")
    interleaved = torch.stack([originals.cpu(), partners.cpu()], 1).flatten(0, 1)     # x0, x0', x1, x1', ...
    return show_images(interleaved, ncols=2 * pairs_per_row, scale=0.85,
                       title=title or f"{names[0]} (left of each pair) beside its {names[1]} (right)")


def decoder_report(name: str, model, meta: dict, test_images: torch.Tensor, generator: torch.Generator,
                   n_prior: int = 16, objective: str = "ELBO"):
    """The figures 2AMU20 Tasks 1b and 1d ask of one VAE: its ELBO curves from the manifest entry
    `meta`; the test images (N, 1, 28, 28) beside reconstructions x' ~ p(x | z), z ~ q(z | x); and
    `n_prior` new images from z ~ p(z): the decoder mean and a draw x' ~ p(x | z). `objective` names
    what the curves show (2AMU20 Task 2d's model optimises a cross-entropy objective, not an ELBO)."""
    plot_elbo_curves(meta, objective=objective).set_title(
        f"{name}: {objective} per epoch ({len(meta['history']['epochs'])} epochs, {meta['trained_seconds']:.0f} s)")
    with torch.no_grad():
        _, recon = model.mean_and_sample(model.sample_posterior_codes(test_images, generator=generator), generator=generator)
        mean, sample = model.mean_and_sample(model.prior.sample(n_prior, generator, device=model.device), generator=generator)
    pairs_grid(test_images, recon.cpu(), title=f"{name}: test image (left) and a reconstruction x' ~ p(x|z), z ~ q(z|x)")
    show_rows({"z ~ p(z): mean of p(x|z)": mean.cpu(), "x' ~ p(x|z)": sample.cpu()}, scale=0.8)


# --- figures of notebooks 01, 02 and 03 -----------------------------------------------------------

def add_title(fig, title: str):
    """Give a figure of image rows or grids (e.g. from `show_rows`, `show_images`) an overall title
    in a band added above it: the figure grows by the band's height and the axes keep their size
    and places, so nothing is squeezed. Returns the Figure."""
    lines = title.count("\n") + 1
    band = 0.12 + 0.24 * lines                                   # inches
    height = fig.get_figheight()
    shrink = height / (height + band)
    for ax in fig.axes:
        pos = ax.get_position()
        ax.set_position([pos.x0, pos.y0 * shrink, pos.width, pos.height * shrink])
    fig.set_figheight(height + band)
    fig.suptitle(title, y=1.0 - 0.06 / (height + band), va="top")
    return fig


def confusion_figure(true: torch.Tensor, predicted: torch.Tensor, n_classes: int = 10, title: str | None = None,
                     ax=None):
    """Confusion matrix (rows: true class, columns: predicted) with the count written in every cell
    (`sklearn.metrics.confusion_matrix`), large enough to read: correct counts on the diagonal in bold
    on a light blue ground, errors shaded red by their count with a colour bar, zeros in light grey.
    Returns the (n_classes, n_classes) count matrix as a tensor."""
    cm = torch.from_numpy(confusion_matrix(true.numpy(), predicted.numpy(), labels=list(range(n_classes))))
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 6.5))
    errors = cm.clone().float()
    errors.fill_diagonal_(0.0)
    top = max(float(errors.max()), 1.0)
    image = ax.imshow(errors.numpy(), cmap="Reds", vmin=0, vmax=top)
    for i in range(n_classes):
        ax.add_patch(plt.Rectangle((i - 0.5, i - 0.5), 1, 1, color="#dbe9f6", zorder=1))
        for j in range(n_classes):
            count = int(cm[i, j])
            if i == j:
                style = {"color": "navy", "fontweight": "bold"}
            elif count == 0:
                style = {"color": "0.7"}
            else:
                style = {"color": "white" if count > 0.55 * top else "black", "fontweight": "bold"}
            ax.text(j, i, str(count), ha="center", va="center", fontsize=10, zorder=2, **style)
    ax.set_xticks(range(n_classes)), ax.set_yticks(range(n_classes))
    ax.set_xlabel("predicted class"), ax.set_ylabel("true class")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="misclassified images (off the diagonal)")
    if title:
        ax.set_title(title)
    return cm


def show_top_anomalies(images: torch.Tensor, labels: torch.Tensor, indices: Sequence[int], top_scores: Sequence[float],
                       score_name: str, title: str, ncols: int = 8, scale: float = 1.1):
    """The images (N, C, H, W) at `indices` (k,), the most anomalous first, each titled
    "label | score": its true class labels[i] (three digits for stacked images) and its anomaly score
    top_scores[j] (k,), rounded to a whole number; the figure title says what the two numbers are.
    Returns the Figure."""
    indices = [int(i) for i in indices]
    top_scores = [float(s) for s in top_scores]
    if len(indices) != len(top_scores):
        raise ValueError(f"indices and top_scores differ in length: {len(indices)} vs {len(top_scores)}")
    stacked = images.shape[1] == 3
    titles = [f"{int(labels[i]):03d} | {s:.0f}" if stacked else f"{int(labels[i])} | {s:.0f}"
              for i, s in zip(indices, top_scores)]
    fig = show_images(images[indices], titles=titles, ncols=ncols, scale=scale)
    return add_title(fig, f"{title}\nabove each image: true {'class' if stacked else 'digit'} | {score_name}")


DIGIT_COLOURS = plt.get_cmap("tab10")


def plot_codes(codes: torch.Tensor, labels: torch.Tensor, ax=None, title: str | None = None, limits=None,
               axis_labels: tuple[str, str] = ("z1", "z2"), point_size: float = 4.0, legend: bool = True):
    """Scatter of 2-D codes (N, 2) coloured by digit label (N,), one legend entry per digit, the
    points drawn in a fixed random order (drawing digit by digit would hide earlier digits).
    limits: ((x_lo, x_hi), (y_lo, y_hi)) to share axes between panels. Returns the Axes."""
    if codes.dim() != 2 or codes.shape[1] != 2 or len(codes) != len(labels):
        raise ValueError(f"codes must be (N, 2) with N labels, got {tuple(codes.shape)} and {len(labels)} labels")
    ax = ax or plt.subplots(figsize=(5, 5))[1]
    c, y = codes.detach().cpu().numpy(), labels.cpu().numpy()
    # one scatter in a fixed random order, so that no digit is drawn over all the others
    order = np.random.default_rng(0).permutation(len(c))
    ax.scatter(c[order, 0], c[order, 1], s=point_size, c=[DIGIT_COLOURS(int(d)) for d in y[order]], alpha=0.7,
               rasterized=True)
    for digit in range(10):                       # legend entries only
        ax.scatter([], [], s=point_size, color=DIGIT_COLOURS(digit), label=f"digit {digit}")
    if limits is not None:
        ax.set_xlim(*limits[0]), ax.set_ylim(*limits[1])
    ax.set_xlabel(axis_labels[0]), ax.set_ylabel(axis_labels[1])
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(markerscale=6 / max(point_size, 1.0) ** 0.5, fontsize=7, loc="best", ncol=2, title="test image label",
                  title_fontsize=7)
    return ax


def show_decoded_plane(images: torch.Tensor, limits, ax=None, title: str | None = None):
    """The n x n images of `latent.decode_grid` tiled on axes whose ticks are the latent
    coordinates (z1 across, z2 up). Returns the Axes."""
    n = int(round(len(images) ** 0.5))
    if n * n != len(images):
        raise ValueError(f"need n * n images, got {len(images)}")
    arr = to_numpy_images(images)
    h, w = arr.shape[1:3]
    tiled = arr[:, :, :, None] if arr.ndim == 3 else arr
    tiled = tiled.reshape(n, n, h, w, -1).transpose(0, 2, 1, 3, 4).reshape(n * h, n * w, -1)
    ax = ax or plt.subplots(figsize=(5, 5))[1]
    (x_lo, x_hi), (y_lo, y_hi) = limits
    ax.imshow(tiled[..., 0] if tiled.shape[-1] == 1 else tiled, cmap="gray", vmin=0, vmax=1,
              extent=(x_lo, x_hi, y_lo, y_hi), aspect="auto", interpolation="nearest")
    ax.set_xlabel("z1"), ax.set_ylabel("z2")
    if title:
        ax.set_title(title)
    return ax


# --- figures of notebook 06 (2AMU20 Task 4) ------------------------------------------------------

def columns_grid(columns: dict[str, torch.Tensor], blocks: int = 1, title: str | None = None, scale: float = 0.9,
                 divide: Sequence[str] = ()):
    """One datapoint per row and one image per column {column title: (N, C, H, W)}, e.g. x, x' and
    x'' side by side (2AMU20 Task 4's 3-column grids); the N rows are split into `blocks` groups set
    side by side, each with its own column titles. The columns named in `divide` get a thin dashed
    line down the middle (e.g. where an observed left half meets a completed right half).
    Returns the Figure."""
    sizes = {len(v) for v in columns.values()}
    if len(sizes) != 1:
        raise ValueError(f"every column needs the same number of images, got {[len(v) for v in columns.values()]}")
    n, ncols = sizes.pop(), len(columns)
    if not 1 <= blocks <= n:
        raise ValueError(f"blocks must be in 1..{n}, got {blocks}")
    rows = -(-n // blocks)
    arrays = [to_numpy_images(v) for v in columns.values()]
    gap = 0.35                                                   # width of the space between blocks, in columns
    fig = plt.figure(figsize=(scale * (blocks * ncols + (blocks - 1) * gap), scale * (rows + 0.4) + (0.35 if title else 0)),
                     layout="compressed")
    grid = fig.add_gridspec(rows, blocks * ncols + blocks - 1,
                            width_ratios=([1] * ncols + [gap]) * (blocks - 1) + [1] * ncols)
    for i in range(n):
        b, r = divmod(i, rows)
        for c, (name, arr) in enumerate(zip(columns, arrays)):
            ax = fig.add_subplot(grid[r, b * (ncols + 1) + c])
            ax.imshow(arr[i], cmap="gray" if arr.ndim == 3 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if name in divide:
                ax.axvline(arr.shape[2] / 2 - 0.5, color="tab:red", ls="--", lw=0.8)
            if r == 0:
                ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


# --- figures of notebook 08 (VU Assignment 4A) ---------------------------------------------------

def image_grids(grids: dict[str, torch.Tensor], ncols: int = 8, title: str | None = None, scale: float = 0.32):
    """Several sets of images side by side, each tiled into one grid of `ncols` columns under its
    own title: {panel title: (N, C, H, W)} with the same N, e.g. prior samples of two models.
    Returns the Figure."""
    sizes = {len(v) for v in grids.values()}
    if len(sizes) != 1 or not grids:
        raise ValueError(f"every panel needs the same number of images, got {[len(v) for v in grids.values()]}")
    n = sizes.pop()
    rows = -(-n // ncols)
    fig, axes = plt.subplots(1, len(grids), figsize=(scale * ncols * len(grids) + 0.3 * (len(grids) - 1),
                                                     scale * rows + (0.9 if title else 0.6)), squeeze=False)
    for ax, (name, images) in zip(axes[0], grids.items()):
        arr = to_numpy_images(images)
        h, w = arr.shape[1:3]
        tiles = np.ones((rows * ncols, h, w) + arr.shape[3:], dtype=arr.dtype)
        tiles[:n] = arr
        tiled = tiles.reshape(rows, ncols, h, w, -1).transpose(0, 2, 1, 3, 4).reshape(rows * h, ncols * w, -1)
        ax.imshow(tiled[..., 0] if tiled.shape[-1] == 1 else tiled, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(name, fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_prior_and_posterior(means: torch.Tensor, prior: torch.Tensor, labels: torch.Tensor, ax=None,
                             title: str | None = None, limits=None, bins: int = 40, smooth: float = 1.0,
                             axis_labels: tuple[str, str] = ("PC 1", "PC 2"), legend: str | None = "right"):
    """One 2-D view of a latent space: encoder means (N, 2) coloured by digit label (N,) over the
    density of prior samples (M, 2), drawn as contour lines of their 2-D histogram (`bins` per axis,
    smoothed by a Gaussian filter of `smooth` bins, at 5 %, 25 %, 50 % and 75 % of its peak).
    limits: ((x_lo, x_hi), (y_lo, y_hi)), default the range of both sets. legend: "right" (outside
    the axes), "inside" or None. Returns the Axes."""
    from scipy.ndimage import gaussian_filter
    if prior.dim() != 2 or prior.shape[1] != 2:
        raise ValueError(f"prior samples must be (M, 2), got {tuple(prior.shape)}")
    if limits is None:
        both = torch.cat([means, prior])
        limits = tuple((both[:, i].min().item(), both[:, i].max().item()) for i in range(2))
    ax = plot_codes(means, labels, ax=ax, title=title, limits=limits, axis_labels=axis_labels, point_size=1.0,
                    legend=False)
    counts, xe, ye = np.histogram2d(prior[:, 0].numpy(), prior[:, 1].numpy(), bins=bins, range=limits)
    density = gaussian_filter(counts, smooth) if smooth > 0 else counts
    centres = (xe[:-1] + xe[1:]) / 2, (ye[:-1] + ye[1:]) / 2
    ax.contour(*centres, density.T, levels=density.max() * np.array([0.05, 0.25, 0.5, 0.75]), colors="k", linewidths=1.0)
    if legend:
        handles, names = ax.get_legend_handles_labels()
        handles.append(plt.Line2D([], [], color="k", lw=1.0))
        names.append("p(z) samples: density\n(5, 25, 50, 75 % of peak)")
        where = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if legend == "right" else {"loc": "best"}
        ax.legend(handles, names, markerscale=4, fontsize=7, title="encoder means, by test label", title_fontsize=7,
                  **where)
    return ax


def density_estimate_figure(grid: torch.Tensor, d_of_x: torch.Tensor, truth: torch.Tensor, estimate: torch.Tensor,
                            f0: torch.Tensor, name: str, xlim=(-4.5, 5.5), log_xlim=None, sample_range=None):
    """IFT6135 Problem 1.4's plot: on the left the discriminator output D(x), the true f1, the
    estimate f0 D / (1 - D) and f0 over `grid` (all (G,)); on the right the densities on a log
    scale, to show the tails, with `sample_range` = (low, high) of the f0 samples shaded if given.
    `name` names f1 in the titles. Returns the figure."""
    x = grid.numpy()
    fig, (ax, ax_log) = plt.subplots(1, 2, figsize=(11, 3.9))
    ax.plot(x, d_of_x.numpy(), color="tab:green", label="discriminator output D(x)")
    ax.plot(x, truth.numpy(), color="black", lw=2.5, alpha=0.4, label=f"true $f_1$ ({name})")
    ax.plot(x, estimate.numpy(), color="tab:red", label=r"estimate $f_0\,D/(1-D)$")
    ax.plot(x, f0.numpy(), ":", color="grey", label="$f_0$ (standard normal)")
    ax.set(xlim=xlim, xlabel="x", ylabel="density, or D(x)", title=f"{name}: discriminator and density estimate")
    ax.legend(loc="upper center", fontsize=8)
    ax_log.semilogy(x, truth.numpy(), color="black", lw=2.5, alpha=0.4, label="true $f_1$")
    ax_log.semilogy(x, estimate.numpy(), color="tab:red", label="estimate")
    ax_log.semilogy(x, f0.numpy(), ":", color="grey", label="$f_0$")
    if sample_range is not None:
        ax_log.axvspan(*sample_range, color="tab:blue", alpha=0.08, label="range of the $f_0$ samples")
    ax_log.set(xlim=log_xlim, ylim=(1e-12, 1), xlabel="x", ylabel="density (log scale)",
               title=f"{name} on a log scale: the tails")
    ax_log.legend(loc="lower center", fontsize=8)
    fig.tight_layout()
    return fig


def grouped_bars(values: dict[str, dict[str, tuple[float, float]]], ax=None, reference: tuple[float, str] | None = None,
                 xlabel: str = "", ylabel: str = "", title: str | None = None, ylim=None):
    """Bars with standard-error whiskers, one group per inner key, one colour per outer key:
    values {series: {group: (mean, se)}} (every series with the same groups, in order); an optional
    dashed horizontal `reference` (value, label). Returns the axes."""
    if not values:
        raise ValueError("grouped_bars needs at least one series")
    groups = list(next(iter(values.values())))
    if any(list(v) != groups for v in values.values()):
        raise ValueError(f"every series needs the groups {groups}")
    ax = ax if ax is not None else plt.subplots(figsize=(8.5, 3.8))[1]
    width = 0.8 / len(values)
    for j, (series, by_group) in enumerate(values.items()):
        offset = (j - (len(values) - 1) / 2) * width
        ax.bar([i + offset for i in range(len(groups))], [by_group[g][0] for g in groups], width,
               yerr=[by_group[g][1] for g in groups], capsize=2, label=series)
    if reference is not None:
        ax.axhline(reference[0], color="k", ls="--", lw=1, label=reference[1])
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel), ax.set_title(title or "")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8), ax.grid(alpha=0.3, axis="y")
    return ax
