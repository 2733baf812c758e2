"""The widgets driven from Python: a value in, a different image out; a bad value refused."""
import pytest
import torch

from helpers import widgets
from helpers.models import VAE


def tiny_vae(latent=2):
    torch.manual_seed(0)
    vae = VAE(channels=1, latent_dim=latent, width=4).eval()
    with torch.no_grad():
        vae.decoder.fc[0].weight.mul_(30)         # make the decoder depend visibly on z
    return vae


def images(n):
    return (torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.3).float()


def test_latent_explorer_moves_the_point_and_changes_the_image():
    vae, x = tiny_vae(), images(50)
    codes = vae.encode(x).detach()
    explorer = widgets.LatentExplorer2D(vae, codes, torch.arange(50) % 10)
    before, png = explorer.image.clone(), explorer.decoded.value
    lo, hi = explorer.limits[0]
    explorer.set_point(lo + 0.9 * (hi - lo), explorer.sliders[1].value)
    assert not torch.equal(explorer.image, before) and explorer.decoded.value != png
    assert explorer.scatter.value[:4] == b"\x89PNG"
    for bad in ((hi + 1, 0.0), (float("nan"), 0.0), ("1", 0.0)):
        with pytest.raises(ValueError, match="z1 must be a finite number"):
            explorer.set_point(*bad)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        widgets.LatentExplorer2D(vae, torch.zeros(5, 3), torch.zeros(5))


def test_interpolation_explorer_follows_lambda():
    vae, x = tiny_vae(4), images(5)
    explorer = widgets.InterpolationExplorer(vae, x, 0, 1)
    explorer.set(weight=0.0)
    at_a = explorer.image.clone()
    assert torch.allclose(at_a, vae.decode(vae.encode(x[:1])), atol=1e-6)
    explorer.set(weight=1.0)
    assert not torch.equal(explorer.image, at_a)
    with pytest.raises(ValueError, match="lambda"):
        explorer.set(weight=1.5)
    with pytest.raises(ValueError, match="second must be an image index"):
        explorer.set(second=5)


def test_principal_directions_explorer_moves_along_a_direction():
    vae = tiny_vae(6)
    codes = torch.randn(300, 6, generator=torch.Generator().manual_seed(1)) * torch.linspace(3, 0.5, 6)
    explorer = widgets.PrincipalDirectionsExplorer(vae, codes, n_directions=3)
    centre = explorer.image.clone()
    explorer.set([2.0, 0.0, 0.0])
    assert not torch.equal(explorer.image, centre)
    with pytest.raises(ValueError, match="PC2"):
        explorer.set([0.0, 9.0, 0.0])
    with pytest.raises(ValueError, match="need 3 coefficients"):
        explorer.set([0.0])


def test_completion_explorer_keeps_the_observed_half():
    vae, x = tiny_vae(3), images(3)
    explorer = widgets.CompletionExplorer(vae, x, n_completions=2, max_steps=20)
    assert explorer.image.shape == (2, 1, 28, 28)
    assert torch.equal(explorer.image[:, :, :, :14], x[:1, :, :, :14].expand(2, 1, 28, 14))
    explorer.set(index=2, mask="top")
    assert torch.equal(explorer.image[:, :, :14], x[2:3, :, :14].expand(2, 1, 14, 28))
    with pytest.raises(ValueError, match="mask must be one of"):
        explorer.set(mask="diagonal")
    with pytest.raises(ValueError, match="index must be in"):
        explorer.set(index=3)


def test_explorer_shows_as_its_widget_with_a_short_text_fallback():
    from IPython.core.formatters import DisplayFormatter
    vae, x = tiny_vae(4), images(5)
    explorer = widgets.InterpolationExplorer(vae, x, 0, 1)
    data, _ = DisplayFormatter().format(explorer)
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id
    text = data["text/plain"]
    assert text.startswith("InterpolationExplorer: ") and "JupyterLab" in text and "VBox" not in text
    assert repr(explorer) == text
    for cls in (widgets.LatentExplorer2D, widgets.InterpolationExplorer, widgets.PrincipalDirectionsExplorer,
                widgets.CompletionExplorer):         # lines short enough for the PDF report's verbatim width
        lines = f"{cls.__name__}: {cls.summary}\n".splitlines() + text.splitlines()[1:]
        assert all(len(line) <= 80 for line in lines), lines


def test_static_figure_shows_the_explorer_view_for_several_points():
    vae = tiny_vae()
    codes = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    explorer = widgets.LatentExplorer2D(vae, codes, torch.arange(50) % 10, title="tiny")
    points = [(-0.5, 0.0), (0.3, 0.2)]
    fig = explorer.static_figure(points)
    decoded = vae.decode(torch.tensor(points)).detach()
    shown = [ax.images[0].get_array() for ax in fig.axes[1:]]
    assert len(shown) == 2 and all(torch.allclose(torch.as_tensor(s, dtype=torch.float32), d[0], atol=1e-6)
                                   for s, d in zip(shown, decoded))
    with pytest.raises(ValueError, match="z1 must be a finite number"):
        explorer.static_figure([(float("nan"), 0.0)])
