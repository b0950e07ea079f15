"""LiExNet: a lightweight CNN for facial expression recognition.

Each of the four feature blocks is

    conv → ReLU → BN → depthwise conv → ReLU → BN → ECA → conv → ReLU → max-pool

with 24, 48, 72 and 96 filters, followed by flatten → FC → ReLU → dropout(0.3) → FC.
Input size, kernel sizes, hidden width and colour come from the config. The defaults
(1×1 first conv, 3×3 depthwise, 1×1 last conv, 16 hidden units) keep the network under
50,000 parameters; a 3×3 first conv on the one-channel input of block 1 costs almost
nothing and widens the receptive field where it matters most.

The paper's ablations are selectable with ``ablation=``:

- ``a1`` — no first conv (the depthwise conv works on the block's input channels and
  the last conv widens to the block's filters);
- ``a2`` — no depthwise conv;
- ``a3`` — no efficient channel attention;
- ``a4`` — no last conv and no max-pool; the first conv then downsamples with stride 2
  so the classifier sees the same grid and the network stays comparable in size.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from .registry import fresh_linear, register_model

ABLATIONS = {
    None: "full LiExNet",
    "a1": "no first conv",
    "a2": "no depthwise conv",
    "a3": "no efficient channel attention",
    "a4": "no last conv and max-pool",
}


def eca_kernel_size(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    """k = |log2(C)/γ + b/γ|, made odd (ECA-Net, Wang et al. 2020)."""
    t = int(abs(math.log2(channels) / gamma + b / gamma))
    return t if t % 2 else t + 1


class EfficientChannelAttention(nn.Module):
    """Global average pool → 1-D conv across channels → sigmoid → re-weight channels."""

    def __init__(self, channels: int, gamma: float = 2.0, b: float = 1.0):
        super().__init__()
        k = eca_kernel_size(channels, gamma, b)
        self.kernel_size = k
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3))  # (N, C)
        w = self.conv(w.unsqueeze(1)).squeeze(1)  # mixes neighbouring channels
        return x * torch.sigmoid(w)[:, :, None, None]


def _conv_relu_bn(cin, cout, k, stride=1, groups=1):
    return [
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(cout),
    ]


class LiExBlock(nn.Module):
    def __init__(
        self,
        cin: int,
        cout: int,
        conv_kernel: int,
        dw_kernel: int,
        last_kernel: int,
        ablation: str | None = None,
        eca_gamma: float = 2.0,
        eca_b: float = 1.0,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c = cin
        if ablation != "a1":
            stride = 2 if ablation == "a4" else 1
            layers += _conv_relu_bn(c, cout, conv_kernel, stride=stride)
            c = cout
        if ablation != "a2":
            layers += _conv_relu_bn(c, c, dw_kernel, groups=c)
        if ablation != "a3":
            layers.append(EfficientChannelAttention(c, eca_gamma, eca_b))
        if ablation != "a4":
            layers += [
                nn.Conv2d(c, cout, last_kernel, padding=last_kernel // 2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


def _per_block(value, n: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"{name} needs one kernel size per block ({n}), got {value}")
    return value


class LiExNet(nn.Module):
    channels_last_ok = True  # trains ~20% faster on CPU in channels_last (see training.loop)

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        input_size: Sequence[int] = (48, 48),
        filters: Sequence[int] = (24, 48, 72, 96),
        conv_kernel: int | Sequence[int] = (3, 1, 1, 1),
        dw_kernel: int | Sequence[int] = 3,
        last_kernel: int | Sequence[int] = 1,
        hidden: int = 16,
        dropout: float = 0.3,
        ablation: str | None = None,
        eca_gamma: float = 2.0,
        eca_b: float = 1.0,
    ):
        super().__init__()
        if ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {ablation!r}; choose from a1, a2, a3, a4")
        n = len(filters)
        ck = _per_block(conv_kernel, n, "conv_kernel")
        dk = _per_block(dw_kernel, n, "dw_kernel")
        lk = _per_block(last_kernel, n, "last_kernel")
        blocks, c = [], in_channels
        for i, f in enumerate(filters):
            blocks.append(LiExBlock(c, f, ck[i], dk[i], lk[i], ablation, eca_gamma, eca_b))
            c = f
        self.features = nn.Sequential(*blocks)
        h, w = (int(v) for v in input_size)
        gh, gw = h >> n, w >> n
        if gh < 1 or gw < 1:
            raise ValueError(f"input_size {h}x{w} is too small for {n} pooling blocks")
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * gh * gw, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.ablation = ablation

    def forward(self, x):
        return self.classifier(self.features(x))

    def reset_classifier(self, num_classes: int, seed: int = 0) -> None:
        """Replace the last FC layer (hidden → classes) by a fresh one with `num_classes`
        outputs (`registry.fresh_linear`); the features and the hidden FC keep theirs."""
        self.classifier[-1] = fresh_linear(self.classifier[-1].in_features, num_classes, seed)


@register_model("liexnet")
def liexnet(**config) -> LiExNet:
    return LiExNet(**config)


for _name in ("a1", "a2", "a3", "a4"):
    register_model(f"liexnet_{_name}")(lambda _a=_name, **config: LiExNet(ablation=_a, **config))
