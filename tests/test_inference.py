"""Encoder-free inference and image completion (2AMU20 Task 4) on a tiny VAE."""
import pytest
import torch

from helpers import inference
from helpers.models import VAE


def tiny_vae():
    """An untrained VAE whose decoder depends strongly on z (so there is something to infer)."""
    torch.manual_seed(0)
    vae = VAE(channels=1, latent_dim=3, width=4).eval()
    with torch.no_grad():
        vae.decoder.fc[0].weight.mul_(30)
    return vae


def images(n, seed=0):
    return (torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def test_fitting_raises_the_elbo_and_leaves_the_decoder_untouched():
    vae = tiny_vae().train()                           # even a model left in training mode
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    x = images(6)
    start = inference.PerImagePosterior(vae, x)
    with inference.frozen(vae):
        elbo0 = torch.stack([start.elbo(torch.arange(6), torch.Generator().manual_seed(s)) for s in range(50)]).mean(0)
    posterior, history = inference.fit_posteriors(vae, x, max_steps=300, lr=0.05, progress=False)
    elbo1 = torch.stack([inference.encoder_free_elbo(posterior, torch.Generator().manual_seed(s)) for s in range(50)]).mean(0)
    assert (elbo1 > elbo0.detach() + 1.0).all()
    for k, v in vae.state_dict().items():
        assert torch.equal(v, before[k]), k                         # batch-norm statistics did not move
    assert vae.training and all(p.requires_grad for p in vae.parameters())   # its state is given back
    assert posterior.mean.shape == (6, 3) and len(history.epochs) <= 300


def test_masks_cover_exactly_what_they_claim():
    left = inference.make_mask("left", n=2)
    assert left.shape == (2, 1, 28, 28) and left[:, :, :, :14].eq(1).all() and left[:, :, :, 14:].eq(0).all()
    top = inference.make_mask("top")
    assert top[0, 0, :14].eq(1).all() and top[0, 0, 14:].eq(0).all()
    for a, b in (("left", "right"), ("top", "bottom")):
        assert torch.equal(inference.make_mask(a) + inference.make_mask(b), torch.ones(1, 1, 28, 28))
    rnd = inference.make_mask("random", n=200, fraction=0.3, generator=torch.Generator().manual_seed(0))
    assert abs(rnd.mean().item() - 0.3) < 0.01
    with pytest.raises(ValueError, match="mask kind"):
        inference.make_mask("diagonal")


def test_a_mask_of_the_wrong_shape_or_values_is_a_clear_error():
    x = images(3)
    with pytest.raises(ValueError, match=r"mask must have shape \(N or 1, 1 or C, H, W\)"):
        inference.fit_posteriors(tiny_vae(), x, torch.ones(3, 1, 14, 28), max_steps=2, progress=False)
    with pytest.raises(ValueError, match="0 \\(missing\\) or 1"):
        inference.check_mask(torch.full((3, 1, 28, 28), 0.5), x)


def test_completion_keeps_the_observed_pixels_and_fills_the_rest():
    vae, x = tiny_vae(), images(4)
    mask = inference.make_mask("left", n=4)
    posterior, _ = inference.fit_posteriors(vae, x, mask, max_steps=20, progress=False)
    filled = inference.complete(posterior, n_samples=3, generator=torch.Generator().manual_seed(0))
    assert filled.shape == (3, 4, 1, 28, 28)
    assert torch.equal(filled[:, :, :, :, :14], x[:, :, :, :14].expand(3, 4, 1, 28, 14))
    assert not torch.equal(filled[0, :, :, :, 14:], filled[1, :, :, :, 14:])     # different z, different fill


def test_the_masked_elbo_ignores_the_missing_pixels():
    vae, x = tiny_vae(), images(2)
    changed = x.clone()
    changed[:, :, :, 14:] = 1 - changed[:, :, :, 14:]               # change only the right half
    mask = inference.make_mask("left", n=2)
    a = inference.PerImagePosterior(vae, x, mask).elbo(torch.arange(2), torch.Generator().manual_seed(0))
    b = inference.PerImagePosterior(vae, changed, mask).elbo(torch.arange(2), torch.Generator().manual_seed(0))
    assert torch.allclose(a, b)
