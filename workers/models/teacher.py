"""A larger network to distil LiExNet from: a compact ResNet for 48×48 faces."""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from .registry import fresh_linear, register_model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class FaceResNet(nn.Module):
    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        input_size: Sequence[int] = (48, 48),
        widths: Sequence[int] = (32, 64, 128, 256),
        blocks_per_stage: int = 2,
        dropout: float = 0.3,
    ):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        c = widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks_per_stage):
                layers.append(BasicBlock(c, w, 2 if (j == 0 and i > 0) else 1))
                c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, num_classes)
        )

    def forward(self, x):
        return self.head(self.features(x))

    def reset_classifier(self, num_classes: int, seed: int = 0) -> None:
        """Replace the final linear layer by a fresh one with `num_classes` outputs
        (`registry.fresh_linear`); the features keep their weights."""
        self.head[-1] = fresh_linear(self.head[-1].in_features, num_classes, seed)


@register_model("resnet_face")
def resnet_face(**config) -> FaceResNet:
    """~2.8M parameters with the default widths: a teacher, not an edge model."""
    return FaceResNet(**config)


@register_model("resnet_face_small")
def resnet_face_small(**config) -> FaceResNet:
    config.setdefault("widths", (16, 32, 64, 128))
    return FaceResNet(**config)
