"""Network building blocks for 28x28 (MNIST) and 32x32 (SVHN) images: the verification
classifier and the conv encoders and decoders the generative models share.

Blocks that normalise take `norm="batch" | "layer" | None` (a WGAN-GP critic must not use batch
norm: its gradient penalty is per sample). "layer" normalises each sample over (C, H, W).
"""
from __future__ import annotations

import torch
from torch import nn

NORMS = ("batch", "layer", None)


def norm2d(kind: str | None, channels: int) -> nn.Module:
    """BatchNorm2d, a per-sample layer norm over (C, H, W) (GroupNorm with one group), or identity."""
    if kind not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def _check_size(image_size: int) -> int:
    if image_size not in (28, 32):
        raise ValueError(f"image_size must be 28 (MNIST) or 32 (SVHN), got {image_size}")
    return image_size


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (padding 1) + batch norm + ReLU; stride 2 halves the spatial size."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class MLPClassifier(nn.Module):
    """(N, C, S, S) -> (N, classes) logits: a fully connected net on the flattened pixels (each
    image standardised first if `standardize`), two hidden ReLU layers of `hidden` units. A second
    opinion beside `DigitClassifier` with nothing in common with it but the data (no convolutions,
    no shared weights)."""

    def __init__(self, in_features: int = 784, hidden: int = 256, classes: int = 10, standardize: bool = False):
        super().__init__()
        self.standardize = standardize     # each image to zero mean and unit deviation over its pixels first
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardize:
            flat = x.flatten(1)
            x = (flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-3)
        return self.net(x)


class DigitClassifier(nn.Module):
    """CNN for one-channel digits: (N, channels, S, S) in [0, 1] -> logits (N, n_classes), S = 28 or 32.

    Three conv stages of width `width`, 2*width, 4*width with max pooling
    (28 -> 14 -> 7 -> 3, or 32 -> 16 -> 8 -> 4), a 128-unit hidden layer (`features`), dropout, logits.
    """

    def __init__(self, width: int = 32, n_classes: int = 10, dropout: float = 0.3, channels: int = 1,
                 image_size: int = 28):
        super().__init__()
        w = width
        self.config = {"width": width, "n_classes": n_classes, "dropout": dropout, "channels": channels,
                       "image_size": _check_size(image_size)}
        side = image_size // 8
        self.body = nn.Sequential(
            conv_bn_relu(channels, w), conv_bn_relu(w, w), nn.MaxPool2d(2),       # 28x28 -> 14x14
            conv_bn_relu(w, 2 * w), conv_bn_relu(2 * w, 2 * w), nn.MaxPool2d(2),  # 14x14 -> 7x7
            conv_bn_relu(2 * w, 4 * w), nn.MaxPool2d(2),                          # 7x7 -> 3x3
        )
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * side * side, 128), nn.ReLU(inplace=True))
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(128, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) -> (N, 128): the penultimate layer (the FID feature space)."""
        return self.embed(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


class ConvEncoder(nn.Module):
    """(N, channels, S, S) -> (N, out_features): two stride-2 convs (S -> S/2 -> S/4), then a linear layer."""

    def __init__(self, channels: int, width: int, out_features: int, norm: str | None = "batch",
                 image_size: int = 28):
        super().__init__()
        side = _check_size(image_size) // 4
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),       # 28x28 -> 14x14
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), norm2d(norm, 2 * width),
            nn.LeakyReLU(0.2),                                                         # 14x14 -> 7x7
            nn.Flatten(), nn.Linear(2 * width * side * side, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """(N, latent_dim) -> (N, out_channels, S, S) raw outputs (logits or distribution parameters):
    a linear layer to S/4 x S/4 feature maps, then two stride-2 transposed convs."""

    def __init__(self, latent_dim: int, width: int, out_channels: int, norm: str | None = "batch",
                 image_size: int = 28):
        super().__init__()
        self.width, self.side = width, _check_size(image_size) // 4
        self.fc = nn.Sequential(nn.Linear(latent_dim, 2 * width * self.side ** 2), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), norm2d(norm, width),
            nn.ReLU(),                                                                  # 7x7 -> 14x14
            nn.ConvTranspose2d(width, out_channels, 4, stride=2, padding=1),            # 14x14 -> 28x28
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(len(z), 2 * self.width, self.side, self.side))


class PoolEncoder(nn.Module):
    """(N, channels, S, S) -> (N, out_features): 3x3 convs with ELU and average pooling
    (S -> S/2 -> S/4), then a linear layer; no normalisation. The encoder IFT6135 Problem 2 suggests."""

    def __init__(self, channels: int, width: int, out_features: int, image_size: int = 28):
        super().__init__()
        side = _check_size(image_size) // 4
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ELU(), nn.AvgPool2d(2),            # 28x28 -> 14x14
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ELU(), nn.AvgPool2d(2),           # 14x14 -> 7x7
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ELU(),
            nn.Flatten(), nn.Linear(2 * width * side * side, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UpsampleDecoder(nn.Module):
    """(N, latent_dim) -> (N, out_channels, S, S): a linear layer to S/4 x S/4 maps, then bilinear
    upsampling and 3x3 convs with ELU (7 -> 14 -> 28); no normalisation."""

    def __init__(self, latent_dim: int, width: int, out_channels: int, image_size: int = 28):
        super().__init__()
        self.width, self.side = width, _check_size(image_size) // 4
        self.fc = nn.Sequential(nn.Linear(latent_dim, 2 * width * self.side ** 2), nn.ELU())
        self.net = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),              # 7x7 -> 14x14
            nn.Conv2d(2 * width, width, 3, padding=1), nn.ELU(),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),              # 14x14 -> 28x28
            nn.Conv2d(width, width // 2, 3, padding=1), nn.ELU(),
            nn.Conv2d(width // 2, out_channels, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(len(z), 2 * self.width, self.side, self.side))


class DCGANGenerator(nn.Module):
    """(N, latent_dim) -> (N, channels, S, S) in [0, 1]: a linear layer to 2w x S/4 x S/4 maps, then
    stride-2 transposed convolutions (7 -> 14 -> 28, or 8 -> 16 -> 32) with batch norm and ReLU,
    and a sigmoid. The DCGAN recipe of Radford et al. (2016), sized for MNIST on a CPU. `blocks` > 0
    inserts that many 3x3 stride-1 convolutions (2w channels, batch norm, ReLU) at S/4 x S/4 before
    the first upsampling, a deeper generator (0 keeps the two-layer network and its state_dict
    keys)."""

    def __init__(self, latent_dim: int = 100, width: int = 64, channels: int = 1, image_size: int = 28,
                 blocks: int = 0):
        super().__init__()
        if blocks < 0:
            raise ValueError(f"blocks must be >= 0, got {blocks}")
        self.width, self.side = width, _check_size(image_size) // 4
        self.fc = nn.Sequential(nn.Linear(latent_dim, 2 * width * self.side ** 2, bias=False),
                                nn.BatchNorm1d(2 * width * self.side ** 2), nn.ReLU())
        self.body = nn.Sequential(*[layer for _ in range(blocks) for layer in (
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU())])
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(),                                                                   # 7x7 -> 14x14
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Sigmoid(),  # 14x14 -> 28x28
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.body(self.fc(z).view(len(z), 2 * self.width, self.side, self.side)))


class DCGANDiscriminator(nn.Module):
    """(N, pack * channels, S, S) -> (N,) logits (real vs generated): two stride-2 convolutions with
    LeakyReLU 0.2 (S -> S/2 -> S/4), `norm` on the second ("batch" for a DCGAN; None or "layer" for a
    WGAN-GP critic, whose gradient penalty is per sample), and a linear layer. With pack > 1 it
    judges `pack` images stacked along the channels at once (PacGAN, Lin et al. 2018)."""

    def __init__(self, channels: int = 1, width: int = 64, norm: str | None = "batch", image_size: int = 28,
                 pack: int = 1):
        super().__init__()
        side = _check_size(image_size) // 4
        self.net = nn.Sequential(
            nn.Conv2d(pack * channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),          # 28 -> 14
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), norm2d(norm, 2 * width), nn.LeakyReLU(0.2),  # -> 7
            nn.Flatten(), nn.Linear(2 * width * side * side, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class DCGANDecoder(DCGANGenerator):
    """(N, latent_dim) -> (N, out_channels, S, S) raw outputs: `DCGANGenerator` without its final
    sigmoid, as a VAE decoder whose likelihood applies the sigmoid (e.g. the unit-variance Gaussian's
    mean). Same layers and the same state_dict keys as the generator, so a VAE with arch "dcgan" and
    a GAN share one generator architecture: sigmoid(DCGANDecoder(z)) is DCGANGenerator(z) for the
    same weights (IFT6135 Problem 3 asks for the same g(z) in both models)."""

    def __init__(self, latent_dim: int = 100, width: int = 64, out_channels: int = 1, image_size: int = 28,
                 blocks: int = 0):
        super().__init__(latent_dim, width, out_channels, image_size, blocks)
        self.net[-1] = nn.Identity()


ENCODERS = {"strided": ConvEncoder, "pooled": PoolEncoder, "dcgan": ConvEncoder}
DECODERS = {"strided": ConvDecoder, "pooled": UpsampleDecoder, "dcgan": DCGANDecoder}
