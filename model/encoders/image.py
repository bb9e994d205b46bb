"""Image encoders trained from scratch: a small CNN and torchvision's resnet18 / mobilenet_v3_small."""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models

from model.encoders.base import ImageEncoder


class SmallCNN(ImageEncoder):
    """Three strided conv blocks and global average pooling, so any input size works."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__("cnn", widths[-1], pretrained=False)
        layers: list[nn.Module] = []
        in_ch = 3
        for width in widths:
            layers += [nn.Conv2d(in_ch, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width)]
            layers.append(nn.ReLU(inplace=True))
            in_ch = width
        self.features = nn.Sequential(*layers)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled features [B, out_dim]."""
        return self.features(pixels).mean(dim=(2, 3))


class TorchvisionEncoder(ImageEncoder):
    """A torchvision classifier (random init, never downloaded) with its classification layer removed."""

    def __init__(self, name: str) -> None:
        net: nn.Module
        if name == "resnet18":
            resnet = models.resnet18(weights=None)
            out_dim = resnet.fc.in_features
            resnet.fc = nn.Identity()
            net = resnet
        elif name == "mobilenet_v3_small":
            mobilenet = models.mobilenet_v3_small(weights=None)
            out_dim = mobilenet.classifier[0].in_features
            mobilenet.classifier = nn.Identity()
            net = mobilenet
        else:
            raise ValueError(f"image_encoder: unknown torchvision encoder {name!r}")
        super().__init__(name, out_dim, pretrained=False)
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled features [B, out_dim]."""
        return self.net(pixels)
