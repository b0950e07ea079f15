"""Batched torch inference on cached uint8 images, with optional test-time flip."""
from __future__ import annotations

import numpy as np
import torch

from edge_agent.preprocess import PreprocessSpec, normalize


@torch.no_grad()
def predict_logits(model, images: np.ndarray, spec: PreprocessSpec, batch_size: int = 512, tta_flip: bool = False) -> np.ndarray:
    """Logits (N, C) for uint8 NHWC images; with tta_flip the mean of the image's and
    its mirror's logits."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(normalize(images[i : i + batch_size], spec))
            y = model(x)
            if tta_flip:
                y = (y + model(x.flip(3))) / 2
            out.append(y.float().numpy())
    finally:
        model.train(was_training)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out)
