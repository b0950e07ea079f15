"""Grad-CAM (Selvaraju et al. 2017): where in the face the model looked for its answer.

The map is taken at the last convolution of the feature extractor, weighted by the
spatially averaged gradient of the chosen class's logit, rectified and upsampled to
the input size.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn

from edge_agent.preprocess import PreprocessSpec, normalize


def last_conv(model: nn.Module) -> nn.Module:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the model has no Conv2d layer for Grad-CAM")
    return convs[-1]


def gradcam(model: nn.Module, images: np.ndarray, spec: PreprocessSpec, target: np.ndarray | None = None):
    """(cams in [0, 1] of shape (N, H, W), probabilities (N, C)) for uint8 NHWC images;
    `target` picks the class per image (default: the predicted one)."""
    model = model.eval()
    layer = last_conv(model)
    store = {}

    def fwd_hook(_m, _i, out):
        store["act"] = out
        out.register_hook(lambda g: store.__setitem__("grad", g))

    handle = layer.register_forward_hook(fwd_hook)
    try:
        x = torch.from_numpy(normalize(images, spec)).requires_grad_(True)
        logits = model(x)
        cls = logits.argmax(1) if target is None else torch.as_tensor(target, dtype=torch.long)
        model.zero_grad(set_to_none=True)
        logits.gather(1, cls[:, None]).sum().backward()
        act, grad = store["act"].detach(), store["grad"].detach()
    finally:
        handle.remove()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * act).sum(1, keepdim=True))
    h, w = spec.size
    cam = torch.nn.functional.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    flat = cam.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    cam = (cam - lo) / (hi - lo).clamp_min(1e-8)
    return cam.numpy(), torch.softmax(logits.detach(), 1).numpy()


def overlay(image: np.ndarray, cam: np.ndarray, scale: int = 3, alpha: float = 0.45) -> np.ndarray:
    """A BGR picture: the face with the heat map laid over it, `scale` times larger."""
    img = image[:, :, 0] if image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if float(cam.max()) < 1e-6:  # no gradient reached the features: show the face only
        alpha = 0.0
    heat = cv2.applyColorMap(np.uint8(255 * cam), cv2.COLORMAP_JET)
    out = cv2.addWeighted(img, 1 - alpha, heat, alpha, 0)
    h, w = out.shape[:2]
    return cv2.resize(out, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)


def save_gallery(model, images, labels, classes, spec: PreprocessSpec, out_dir, limit: int = 12) -> list[dict]:
    """PNG overlays for up to `limit` images; returns one dict per picture (file name,
    true and predicted class, confidence)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = min(limit, len(images))
    if n == 0:
        return []
    cams, probs = gradcam(model, images[:n], spec)
    items = []
    for i in range(n):
        name = f"gradcam-{i:02d}.png"
        cv2.imwrite(str(out_dir / name), overlay(images[i], cams[i]))
        k = int(probs[i].argmax())
        items.append({"file": name, "true": classes[int(labels[i])], "predicted": classes[k],
                      "confidence": round(float(probs[i, k]), 4)})
    return items
