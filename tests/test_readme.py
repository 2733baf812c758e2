"""The README's notebook table quotes the stored numbers: each headline below is read from the
manifest (the same stored evaluation the notebook prints), formatted as the README writes it, and
must appear in that notebook's row. A retrain that changes a number fails here until the README
says the new one."""
import re
from pathlib import Path

import pytest

from helpers import checkpoints, recipes

README = Path(__file__).resolve().parents[1] / "README.md"


def row(notebook: str) -> str:
    """The README table row of `notebook` (e.g. "09_dcgan")."""
    rows = [line for line in README.read_text().splitlines() if line.startswith(f"| [{notebook}]")]
    assert len(rows) == 1, f"README: expected one table row for {notebook}, found {len(rows)}"
    return rows[0]


def ev(name, *path, part=None):
    node = recipes.stored_evaluation(name, part)
    for key in path:
        node = node[key]
    return node


def metric(name, key):
    return checkpoints.entry(name)["metrics"][key]


HEADLINES = [
    ("01_data_and_verification_net", lambda: f"{metric('verification_net', 'mnist_test_accuracy'):.4f}"),
    ("02_autoencoder", lambda: f"{ev('ae_mono', 'samples_fitted', 'predictability'):.3f}"),
    ("03_vae", lambda: f"{ev('vae_mono', 'samples', 'predictability'):.3f}"),
    ("03_vae", lambda: f"{ev('vae_mono', 'channelwise_samples', 'kl'):.3f}"),
    ("08_flow_prior_vae", lambda: f"{ev('vae_mono_flow', 'val_elbo', 'mean', part='prior_comparison'):.2f}"),
    ("09_dcgan", lambda: f"{ev('dcgan_mnist', 'predictability', 'mean'):.3f}"),
    ("09_dcgan", lambda: f"{ev('dcgan_mnist', 'kl', 'mean'):.4f}"),
    ("09_dcgan", lambda: f"{ev('dcgan_stacked', 'modes', 'mean'):.1f}"),
    ("09_dcgan", lambda: f"{ev('pacgan_stacked', 'kl', 'mean'):.3f}"),
    ("10_wgan_and_divergences", lambda: f"{ev('wgan_gp_mnist', 'predictability', 'mean'):.3f}"),
    ("10_wgan_and_divergences", lambda: f"{ev('dcgan_mnist', 'predictability', 'mean'):.3f}"),
    ("11_fid_and_comparison", lambda: f"{metric('svhn_classifier', 'real_fid'):.1f}"),
    ("11_fid_and_comparison", lambda: f"{metric('vae_svhn', 'fid'):.1f}"),
    ("11_fid_and_comparison", lambda: f"{metric('vae_svhn_flow', 'fid'):.1f}"),
    ("11_fid_and_comparison", lambda: f"{metric('wgan_gp_svhn', 'fid'):.1f}"),
]


@pytest.mark.parametrize("notebook, value", HEADLINES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(HEADLINES)])
def test_the_readme_quotes_the_stored_headline(notebook, value):
    number = value()
    text = row(notebook).replace("−", "-")
    assert re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", text), \
        f"README row {notebook} does not quote the stored {number}"
