"""Batched augmentation on normalised NCHW tensors: one call per batch keeps a 2-core
CPU busy with arithmetic instead of Python loops.

Inputs are already `edge_agent.preprocess.normalize` output, so every operation is
written for normalised pixels: value 0 is the data mean, which is what erasing fills and
what brightness/contrast pivot around.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    flip: float = 0.5  # probability of a horizontal flip
    rotate_deg: float = 10.0
    scale: float = 0.10  # ± relative zoom
    translate: float = 0.10  # ± fraction of width / height
    brightness: float = 0.2  # ± shift, in units of normalised pixels
    contrast: float = 0.2  # ± relative contrast
    erase: float = 0.5  # probability of one random erasing rectangle
    erase_area: tuple[float, float] = (0.02, 0.15)
    erase_ratio: tuple[float, float] = (0.3, 3.3)

    @classmethod
    def off(cls) -> "AugmentConfig":
        return cls(0, 0, 0, 0, 0, 0, 0)


def _uniform(n, lo, hi, g):
    return torch.rand(n, generator=g) * (hi - lo) + lo


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, return_flip: bool = False):
    """The augmented batch (N, C, H, W); with return_flip also the (N,) bool mask of the
    images that were mirrored (cached distillation picks the matching teacher logits)."""
    n, _, h, w = x.shape
    flip = torch.zeros(n, dtype=torch.bool)
    if cfg.flip > 0:
        flip = torch.rand(n, generator=g) < cfg.flip
        if flip.any():
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if cfg.rotate_deg > 0 or cfg.scale > 0 or cfg.translate > 0:
        a = _uniform(n, -cfg.rotate_deg, cfg.rotate_deg, g) * (math.pi / 180)
        s = 1.0 / _uniform(n, 1 - cfg.scale, 1 + cfg.scale, g)
        tx = _uniform(n, -cfg.translate, cfg.translate, g) * 2
        ty = _uniform(n, -cfg.translate, cfg.translate, g) * 2
        cos, sin = torch.cos(a) * s, torch.sin(a) * s
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.brightness > 0 or cfg.contrast > 0:
        c = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, g)[:, None, None, None]
        b = _uniform(n, -cfg.brightness, cfg.brightness, g)[:, None, None, None]
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - m) * c + m + b
    if cfg.erase > 0:
        do = torch.rand(n, generator=g) < cfg.erase
        area = _uniform(n, *cfg.erase_area, g) * h * w
        ratio = torch.exp(_uniform(n, math.log(cfg.erase_ratio[0]), math.log(cfg.erase_ratio[1]), g))
        eh = torch.sqrt(area * ratio).clamp(1, h)
        ew = torch.sqrt(area / ratio).clamp(1, w)
        y0 = torch.rand(n, generator=g) * (h - eh)
        x0 = torch.rand(n, generator=g) * (w - ew)
        ys = torch.arange(h, dtype=torch.float32)[None, :, None]
        xs = torch.arange(w, dtype=torch.float32)[None, None, :]
        box = (
            (ys >= y0[:, None, None]) & (ys < (y0 + eh)[:, None, None])
            & (xs >= x0[:, None, None]) & (xs < (x0 + ew)[:, None, None])
            & do[:, None, None]
        )
        x = x.masked_fill(box[:, None], 0.0)
    return (x, flip) if return_flip else x


def mixup(x: torch.Tensor, q: torch.Tensor, alpha: float, g: torch.Generator):
    """Mix a batch with a shuffled copy of itself; q are soft targets (N, C)."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample()) if alpha > 0 else 1.0
    perm = torch.randperm(x.shape[0], generator=g)
    return lam * x + (1 - lam) * x[perm], lam * q + (1 - lam) * q[perm], perm, lam
