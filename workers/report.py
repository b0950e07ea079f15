"""Model size and cost: parameters, FLOPs (torch.utils.flop_counter), peak inference
memory, and ONNX Runtime latency."""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from edge_agent.preprocess import PreprocessSpec


def count_flops(model: nn.Module, spec: PreprocessSpec, batch: int = 1) -> int:
    """FLOPs of one forward pass (torch counts a multiply-add as 2 FLOPs; only
    matmul/conv-like ops are counted, so BN, ReLU, pooling are excluded)."""
    h, w = spec.size
    x = torch.zeros(batch, spec.channels, h, w)
    model = model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return int(fc.get_total_flops())


def peak_inference_memory(model: nn.Module, spec: PreprocessSpec, batch: int = 1) -> dict:
    """Peak memory of one no-grad forward pass: weights and buffers plus the largest
    (input + output) activation pair of any layer — what must be live at once when
    layers run one after another, as in every network registered here. A model
    with skip connections holds more; this is then a lower bound."""
    h, w = spec.size
    x = torch.zeros(batch, spec.channels, h, w)
    peak = 0

    def nbytes(t):
        if isinstance(t, torch.Tensor):
            return t.numel() * t.element_size()
        if isinstance(t, (tuple, list)):
            return sum(nbytes(v) for v in t)
        return 0

    def hook(_m, inputs, output):
        nonlocal peak
        peak = max(peak, nbytes(inputs) + nbytes(output))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for hd in handles:
            hd.remove()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    return {"batch": batch, "activation_peak_bytes": int(peak), "weight_bytes": int(weights),
            "total_peak_bytes": int(peak + weights)}


def onnx_latency(onnx_path, spec: PreprocessSpec, batch: int = 1, runs: int = 200, warmup: int = 20, threads: int | None = None) -> dict:
    from .export import onnx_session

    sess = onnx_session(onnx_path, threads)
    name = sess.get_inputs()[0].name
    h, w = spec.size
    x = np.random.default_rng(0).standard_normal((batch, spec.channels, h, w)).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"batch": batch, "runs": runs, "median_ms": med * 1e3, "p90_ms": float(np.percentile(times, 90)) * 1e3,
            "images_per_s": batch / med}


def model_report(model: nn.Module, spec: PreprocessSpec, onnx_path=None) -> dict:
    out = {
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "flops_per_image": count_flops(model, spec),
        "peak_inference_memory": peak_inference_memory(model, spec),
    }
    if onnx_path is not None:
        out["onnxruntime_latency_batch1"] = onnx_latency(onnx_path, spec, 1)
    return out


def machine() -> str:
    """One line naming the CPU, its core count and the runtimes, for cards and notes."""
    import os
    import platform

    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, no GPU used; torch {torch.__version__}, "
            f"ONNX Runtime {onnxruntime.__version__}")
