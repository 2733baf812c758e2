"""ipywidgets explorers over a trained model, for stepping through a latent space in JupyterLab.

Each explorer keeps the tensor it shows (`.image`, (1, C, H, W) or (k, C, H, W)) and renders PNGs
into `ipywidgets.Image` widgets, so it can be driven and checked from Python as well as by hand.
Values out of range, not finite or of the wrong kind are refused with a ValueError. Every widget
cell in a notebook is preceded by a static figure of the same view, for PDF reports.
"""
from __future__ import annotations

import io
import math

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from . import inference, latent
from .data import validate_images

COLOURS = "tab10"


def images_png(images: torch.Tensor, scale: int = 4, ncols: int | None = None) -> bytes:
    """(N, C, H, W) in [0, 1] -> PNG bytes of a grid (one row unless ncols), each pixel scale x scale."""
    validate_images(images, size=images.shape[-1])
    arr = (images.detach().cpu().clamp(0, 1) * 255).round().byte().numpy()
    n, c, h, w = arr.shape
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    grid = np.zeros((nrows * (h + 2), ncols * (w + 2), c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[r * (h + 2) + 1:r * (h + 2) + 1 + h, col * (w + 2) + 1:col * (w + 2) + 1 + w] = arr[i].transpose(1, 2, 0)
    picture = Image.fromarray(grid[..., 0] if c == 1 else grid)
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    out = io.BytesIO()
    picture.save(out, format="png")
    return out.getvalue()


def scatter_png(codes: torch.Tensor, labels: torch.Tensor, point=None, limits=None, title: str = "") -> bytes:
    """PNG of 2-D codes (N, 2) coloured by label (N,), with `point` (z1, z2) marked by a cross."""
    fig = Figure(figsize=(4, 4), dpi=72)
    ax = fig.add_subplot()
    sc = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap=COLOURS, s=4, vmin=-0.5, vmax=9.5)
    if point is not None:
        ax.plot([point[0]], [point[1]], "kx", ms=14, mew=3, label="decoded point")
        ax.legend(loc="upper right", fontsize=8)
    if limits is not None:
        ax.set_xlim(limits[0]), ax.set_ylim(limits[1])
    fig.colorbar(sc, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("z1"), ax.set_ylabel("z2"), ax.set_title(title or "encoded test images")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _finite_in(value, lo: float, hi: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a finite number in [{lo:.3g}, {hi:.3g}], got {value!r}")
    return float(value)


class _Explorer:
    """Shown as its `widget` in JupyterLab; its text/plain (what a PDF report or a terminal prints)
    is two short lines naming the explorer, instead of the repr of the widget tree."""
    widget: widgets.Widget
    summary = "an explorer"

    def __repr__(self) -> str:
        return f"{type(self).__name__}: {self.summary}\n[interactive widget: open the notebook in JupyterLab to use it]"

    def _repr_mimebundle_(self, include=None, exclude=None):
        shown = self.widget._repr_mimebundle_           # None once the widget is closed
        bundle = shown() if callable(shown) else {}
        bundle["text/plain"] = repr(self)
        return bundle

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))


class LatentExplorer2D(_Explorer):
    """A point (z1, z2) chosen with two sliders; the scatter of encoded images with the point
    marked, and the image decoded there. model: `decode` (1, 2) -> (1, C, H, W); codes (N, 2)
    and labels (N,) of the scatter."""

    summary = "a point (z1, z2) on two sliders, the image decoded there"

    def __init__(self, model, codes: torch.Tensor, labels: torch.Tensor, limits=None, title: str = ""):
        if codes.dim() != 2 or codes.shape[1] != 2:
            raise ValueError(f"codes must be (N, 2), got {tuple(codes.shape)}")
        self.model, self.codes, self.labels, self.title = model, codes, labels, title
        if limits is None:
            lo, hi = codes.quantile(0.005, dim=0), codes.quantile(0.995, dim=0)
            pad = 0.1 * (hi - lo)
            limits = ((float(lo[0] - pad[0]), float(hi[0] + pad[0])), (float(lo[1] - pad[1]), float(hi[1] + pad[1])))
        self.limits = limits
        self.sliders = [widgets.FloatSlider(value=float(np.mean(lim)), min=lim[0], max=lim[1], step=(lim[1] - lim[0]) / 200,
                                            description=name, continuous_update=False)
                        for name, lim in zip(("z1", "z2"), limits)]
        self.scatter, self.decoded = widgets.Image(format="png"), widgets.Image(format="png")
        self.decoded.add_class("dgm-decoded")     # how the browser test finds the decoded image
        for s in self.sliders:
            s.observe(self.update, names="value")
        self.widget = widgets.VBox([widgets.HBox(self.sliders), widgets.HBox(
            [self.scatter, self.decoded], layout=widgets.Layout(align_items="flex-start"))])
        self.update()

    def set_point(self, z1: float, z2: float) -> None:
        """Move the point (a ValueError outside the sliders' range)."""
        z1 = _finite_in(z1, *self.limits[0], "z1")
        z2 = _finite_in(z2, *self.limits[1], "z2")
        self.sliders[0].value, self.sliders[1].value = z1, z2

    @torch.no_grad()
    def static_figure(self, points, n_codes: int | None = None):
        """The explorer's view for several slider positions at once, for a printed report: the
        scatter with each point marked A, B, C, ... and the image decoded at each. points: a list of
        (z1, z2). Returns the matplotlib Figure."""
        from . import plotting
        import matplotlib.pyplot as plt
        points = [(_finite_in(a, *self.limits[0], "z1"), _finite_in(b, *self.limits[1], "z2")) for a, b in points]
        codes = self.codes if n_codes is None else self.codes[:n_codes]
        labels = self.labels if n_codes is None else self.labels[:n_codes]
        fig = plt.figure(figsize=(11, 4.2))
        ax = fig.add_axes([0.05, 0.12, 0.42, 0.8])
        plotting.plot_codes(codes, labels, ax=ax, limits=self.limits, point_size=3,
                            title=f"{self.title}: {len(points)} slider positions")
        decoded = self.model.decode(torch.tensor(points, dtype=torch.float32)).cpu()
        for i, (z1, z2) in enumerate(points):
            name = chr(ord("A") + i)
            ax.plot(z1, z2, marker="X", color="k", markersize=11)
            ax.annotate(name, (z1, z2), xytext=(6, 6), textcoords="offset points", fontsize=12, weight="bold")
            axi = fig.add_axes([0.52 + 0.155 * i, 0.25, 0.14, 0.55])
            axi.imshow(decoded[i, 0].numpy(), cmap="gray", vmin=0, vmax=1), axi.set_xticks([]), axi.set_yticks([])
            axi.set_title(f"{name}: decoded at\n({z1:+.1f}, {z2:+.1f})", fontsize=10)
        return fig

    @torch.no_grad()
    def update(self, change=None) -> None:
        point = (self.sliders[0].value, self.sliders[1].value)
        self.image = self.model.decode(torch.tensor([point], dtype=torch.float32)).cpu()
        self.decoded.value = images_png(self.image, scale=6)
        self.scatter.value = scatter_png(self.codes, self.labels, point, self.limits, self.title)


class InterpolationExplorer(_Explorer):
    """Two test images chosen by index and a slider lambda in [0, 1]: the image decoded at
    (1 - lambda) z_a + lambda z_b, with z the encoder means, beside the two originals."""

    summary = "the image decoded between two test images' codes"

    def __init__(self, model, images: torch.Tensor, first: int = 0, second: int = 1):
        self.model, self.images = model, images
        n = len(images)
        self.first = widgets.BoundedIntText(value=first, min=0, max=n - 1, description="image a")
        self.second = widgets.BoundedIntText(value=second, min=0, max=n - 1, description="image b")
        self.weight = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="lambda",
                                          continuous_update=False)
        self.view = widgets.Image(format="png")
        for w in (self.first, self.second, self.weight):
            w.observe(self.update, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.first, self.second, self.weight]), self.view])
        self.update()

    def set(self, first: int | None = None, second: int | None = None, weight: float | None = None) -> None:
        """Choose the images (indices) and lambda; a ValueError outside their ranges."""
        n = len(self.images)
        for value, name in ((first, "first"), (second, "second")):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n):
                raise ValueError(f"{name} must be an image index in 0..{n - 1}, got {value!r}")
        if weight is not None:
            weight = _finite_in(weight, 0.0, 1.0, "lambda")
        if first is not None:
            self.first.value = first
        if second is not None:
            self.second.value = second
        if weight is not None:
            self.weight.value = weight

    @torch.no_grad()
    def update(self, change=None) -> None:
        a, b = self.images[self.first.value:self.first.value + 1], self.images[self.second.value:self.second.value + 1]
        za, zb = latent.encode(self.model, a), latent.encode(self.model, b)
        between = self.model.decode(latent.interpolate(za[0], zb[0], weights=[self.weight.value])).cpu()
        self.image = between
        self.view.value = images_png(torch.cat([a.cpu(), between, b.cpu()]), scale=5)


class PrincipalDirectionsExplorer(_Explorer):
    """Sliders along the top principal directions of a K-dimensional model's codes: the image
    decoded at mean + sum_i c_i sd_i d_i, with c_i in standard deviations along direction d_i."""

    summary = "the image decoded along the principal directions"

    def __init__(self, model, codes: torch.Tensor, n_directions: int = 3, reach: float = 3.0):
        _, ratio, fitted = latent.pca(codes, n_directions)
        self.model, self.reach, self.ratio = model, reach, ratio
        self.mean = torch.from_numpy(fitted.mean_).float()
        self.directions = torch.from_numpy(fitted.components_).float()                        # (k, K)
        self.sd = torch.from_numpy(np.sqrt(fitted.explained_variance_)).float()               # (k,)
        self.sliders = [widgets.FloatSlider(value=0.0, min=-reach, max=reach, step=0.1, continuous_update=False,
                                            description=f"PC{i + 1} ({float(r):.0%})") for i, r in enumerate(ratio)]
        self.view = widgets.Image(format="png")
        for s in self.sliders:
            s.observe(self.update, names="value")
        self.widget = widgets.VBox([*self.sliders, self.view])
        self.update()

    def set(self, coefficients) -> None:
        """Set every slider (standard deviations along each direction); a ValueError outside +-reach."""
        if len(coefficients) != len(self.sliders):
            raise ValueError(f"need {len(self.sliders)} coefficients, got {len(coefficients)}")
        values = [_finite_in(c, -self.reach, self.reach, f"PC{i + 1}") for i, c in enumerate(coefficients)]
        for s, v in zip(self.sliders, values):
            s.value = v

    @torch.no_grad()
    def update(self, change=None) -> None:
        c = torch.tensor([s.value for s in self.sliders])
        z = self.mean + (c * self.sd) @ self.directions
        self.image = self.model.decode(z.unsqueeze(0)).cpu()
        self.view.value = images_png(self.image, scale=6)


class CompletionExplorer(_Explorer):
    """A test image and a mask chosen from menus; the button fits q(z | Psi) to the observed pixels
    (`inference.fit_posteriors`) and shows the masked image and `n_completions` completions."""

    summary = "a test image, a mask and completions without the encoder"

    def __init__(self, vae, images: torch.Tensor, n_completions: int = 4, max_steps: int = 400):
        self.vae, self.images, self.n, self.max_steps = vae, images, n_completions, max_steps
        self.index = widgets.BoundedIntText(value=0, min=0, max=len(images) - 1, description="test image")
        self.mask = widgets.Dropdown(options=list(inference.MASKS), value="left", description="observed")
        self.button = widgets.Button(description="complete")
        self.view = widgets.Image(format="png")
        self.button.on_click(lambda _: self.update())
        self.widget = widgets.VBox([widgets.HBox([self.index, self.mask, self.button]), self.view])
        self.update()

    def set(self, index: int | None = None, mask: str | None = None) -> None:
        """Choose the image and the mask kind, then complete; a ValueError for a bad choice."""
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.images):
                raise ValueError(f"index must be in 0..{len(self.images) - 1}, got {index!r}")
            self.index.value = index
        if mask is not None:
            if mask not in inference.MASKS:
                raise ValueError(f"mask must be one of {inference.MASKS}, got {mask!r}")
            self.mask.value = mask
        self.update()

    def update(self) -> None:
        x = self.images[self.index.value:self.index.value + 1]
        g = torch.Generator().manual_seed(self.index.value)
        m = inference.make_mask(self.mask.value, 1, x.shape[-1], generator=g)
        posterior, _ = inference.fit_posteriors(self.vae, x, m, max_steps=self.max_steps, progress=False)
        filled = inference.complete(posterior, self.n, generator=g)
        self.image = filled.reshape(self.n, *x.shape[1:])
        self.view.value = images_png(torch.cat([x, x * m, self.image]), scale=4)
