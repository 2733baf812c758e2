"""Network building blocks for 28x28 images: the verification classifier and shared conv parts."""
from __future__ import annotations

import torch
from torch import nn

ARCHITECTURES: dict[str, type[nn.Module]] = {}


def register(cls: type[nn.Module]) -> type[nn.Module]:
    """Make a model class buildable from a checkpoint manifest's config by its name."""
    ARCHITECTURES[cls.__name__] = cls
    return cls


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (padding 1) + batch norm + ReLU; stride 2 halves the spatial size."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


@register
class DigitClassifier(nn.Module):
    """CNN for one-channel 28x28 digits: (N, 1, 28, 28) in [0, 1] -> logits (N, n_classes).

    Three conv stages of width `width`, 2*width, 4*width with max pooling
    (28 -> 14 -> 7 -> 3), then a 128-unit hidden layer with dropout.
    """

    def __init__(self, width: int = 32, n_classes: int = 10, dropout: float = 0.3):
        super().__init__()
        w = width
        self.config = {"width": width, "n_classes": n_classes, "dropout": dropout}
        self.features = nn.Sequential(
            conv_bn_relu(1, w), conv_bn_relu(w, w), nn.MaxPool2d(2),              # 28x28 -> 14x14
            conv_bn_relu(w, 2 * w), conv_bn_relu(2 * w, 2 * w), nn.MaxPool2d(2),  # 14x14 -> 7x7
            conv_bn_relu(2 * w, 4 * w), nn.MaxPool2d(2),                          # 7x7 -> 3x3
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 9, 128), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(128, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ConvEncoder(nn.Module):
    """(N, channels, 28, 28) -> (N, out_features): two stride-2 convs, then a linear layer."""

    def __init__(self, channels: int, width: int, out_features: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),       # 28x28 -> 14x14
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2),                                                         # 14x14 -> 7x7
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """(N, latent_dim) -> (N, out_channels, 28, 28) raw outputs (logits or distribution parameters):
    a linear layer to 7x7 feature maps, then two stride-2 transposed convs."""

    def __init__(self, latent_dim: int, width: int, out_channels: int):
        super().__init__()
        self.width = width
        self.fc = nn.Sequential(nn.Linear(latent_dim, 2 * width * 7 * 7), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.BatchNorm2d(width),
            nn.ReLU(),                                                                  # 7x7 -> 14x14
            nn.ConvTranspose2d(width, out_channels, 4, stride=2, padding=1),            # 14x14 -> 28x28
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(len(z), 2 * self.width, 7, 7))


class PoolEncoder(nn.Module):
    """(N, channels, 28, 28) -> (N, out_features): 3x3 convs with ELU and average pooling
    (28 -> 14 -> 7), then a linear layer. The assignment's suggested encoder for notebook 07."""

    def __init__(self, channels: int, width: int, out_features: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ELU(), nn.AvgPool2d(2),            # 28x28 -> 14x14
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ELU(), nn.AvgPool2d(2),           # 14x14 -> 7x7
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ELU(),
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UpsampleDecoder(nn.Module):
    """(N, latent_dim) -> (N, out_channels, 28, 28): a linear layer to 7x7 maps, then bilinear
    upsampling and 3x3 convs with ELU (7 -> 14 -> 28)."""

    def __init__(self, latent_dim: int, width: int, out_channels: int):
        super().__init__()
        self.width = width
        self.fc = nn.Sequential(nn.Linear(latent_dim, 2 * width * 7 * 7), nn.ELU())
        self.net = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),              # 7x7 -> 14x14
            nn.Conv2d(2 * width, width, 3, padding=1), nn.ELU(),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),              # 14x14 -> 28x28
            nn.Conv2d(width, width // 2, 3, padding=1), nn.ELU(),
            nn.Conv2d(width // 2, out_channels, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(len(z), 2 * self.width, 7, 7))


ENCODERS = {"strided": ConvEncoder, "pooled": PoolEncoder}
DECODERS = {"strided": ConvDecoder, "pooled": UpsampleDecoder}
