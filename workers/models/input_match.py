"""A fixed, parameter-free front end that makes field images look like training images.

Why: the FER2013 copy this project trains on (shared/datasets/fer2013/fer2013.zip) has
degraded *training* images — blurred (≈ Gaussian σ 3 px at 48×48), lower in contrast
(mean per-image std 38 vs 54) and noisy — while its PublicTest/PrivateTest images, like
camera crops, are sharp. A network trained on the blurred images alone scores near
chance on sharp faces (measured: 24 % PublicTest after 4 epochs, below the majority
class). So the front end

- standardises every image (zero mean, unit std) in training and inference alike,
  which removes the contrast gap;
- blurs with σ = `train_blur` in training (suppresses the training images' noise) and
  with σ = `eval_blur` in eval mode, i.e. in validation, evaluation and the exported
  ONNX graph, so a sharp face reaches the first convolution about as blurred as the
  training faces did.

It behaves differently in train and eval mode, as dropout and batch norm do, and has no
parameters; `eval_blur` can be tuned on the validation split after training.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def gaussian_kernel_1d(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


class InputMatch(nn.Module):
    def __init__(self, channels: int, train_blur: float = 0.0, eval_blur: float = 0.0, standardize: bool = True):
        super().__init__()
        self.channels = channels
        self.standardize = standardize
        self.train_blur = float(train_blur)
        self.eval_blur = float(eval_blur)
        # Not persistent: the kernels follow from the config, so eval_blur can change
        # after training without touching the checkpoint's state_dict.
        # Separable Gaussian as two depthwise convolutions with fixed, fully shaped
        # kernels (the ONNX exporter needs static kernel shapes).
        self.register_buffer("k_train", self._kernel(train_blur), persistent=False)
        self.register_buffer("k_eval", self._kernel(eval_blur), persistent=False)

    def _kernel(self, sigma: float) -> torch.Tensor:
        k = gaussian_kernel_1d(sigma) if sigma > 0 else torch.ones(1)
        return k.view(1, 1, 1, -1).repeat(self.channels, 1, 1, 1).contiguous()

    def set_eval_blur(self, sigma: float):
        """Change the inference-time blur (e.g. after tuning it on validation data)."""
        self.eval_blur = float(sigma)
        self.k_eval = self._kernel(sigma).to(self.k_train.device)

    def _blur(self, x, k):
        if k.shape[-1] == 1:
            return x
        r = k.shape[-1] // 2
        x = F.pad(x, (r, r, r, r), mode="reflect")
        x = F.conv2d(x, k, groups=self.channels)
        return F.conv2d(x, k.transpose(2, 3).contiguous(), groups=self.channels)

    def forward(self, x):
        x = self._blur(x, self.k_train if self.training else self.k_eval)
        if self.standardize:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = (x - mean).pow(2).mean(dim=(1, 2, 3), keepdim=True).add(1e-5).sqrt()
            x = (x - mean) / std
        return x

    def extra_repr(self):
        return f"train_blur={self.train_blur}, eval_blur={self.eval_blur}, standardize={self.standardize}"
