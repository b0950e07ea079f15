"""`build-engine`: compile an ONNX model into a TensorRT engine on the board itself
(engines are specific to the GPU and TensorRT version that built them)."""
from __future__ import annotations

import json
from pathlib import Path

from .classifier import ModelError, OnnxRuntimeBackend, read_metadata, sha256_of, tensorrt_available
from .preprocess import PreprocessSpec

NO_TENSORRT = (
    "TensorRT's Python bindings do not import here, so no engine can be built. On a Jetson, "
    "install JetPack's TensorRT (`sudo apt install nvidia-tensorrt python3-libnvinfer`) and run the "
    "agent with the system Python (or a venv made with --system-site-packages). Without an engine "
    "the agent uses ONNX Runtime (TensorRT → CUDA → CPU providers)."
)


def engine_sidecar(onnx_path: str | Path, fp16: bool, max_batch: int, tensorrt_version: str) -> dict:
    """What `<model>.engine.json` holds: the engine does not carry the ONNX metadata, so
    this ties it to its source model (`load_model` refuses an engine whose onnx_sha256
    differs from the model file's). Raises ModelError for a model without Affectwatch's
    metadata."""
    onnx_path = Path(onnx_path)
    ort = OnnxRuntimeBackend(onnx_path, ["CPUExecutionProvider"])
    labels, spec, arch, version = read_metadata(ort.metadata(), onnx_path)
    return {"onnx": onnx_path.name, "onnx_sha256": sha256_of(onnx_path), "version": version, "arch": arch,
            "labels": list(labels), "preprocess": spec.to_dict(), "fp16": fp16, "max_batch": max_batch,
            "tensorrt": tensorrt_version}


def build_engine(onnx_path: str | Path, engine_path: str | Path | None = None, fp16: bool = True,
                 max_batch: int = 32, workspace_mb: int = 256) -> Path:
    """Serialise a TensorRT engine (FP16 where the GPU has fast FP16) with an optimisation
    profile for batch 1..max_batch, and its `.engine.json` sidecar. The one engine
    builder: `python -m edge_agent build-engine` and `python -m workers.training
    build-engine` both call it. Raises ModelError (no TensorRT here, a model without
    metadata, a graph TensorRT cannot parse or build)."""
    onnx_path = Path(onnx_path)
    engine_path = Path(engine_path) if engine_path else onnx_path.with_suffix(".engine")
    if not tensorrt_available():
        raise ModelError(NO_TENSORRT)
    import tensorrt as trt

    sidecar = engine_sidecar(onnx_path, fp16, max_batch, trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT < 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:  # TensorRT 7 / 8.0
        config.max_workspace_size = workspace_mb << 20
    if fp16 and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    sidecar["fp16"] = bool(fp16 and builder.platform_has_fast_fp16)
    profile = builder.create_optimization_profile()
    spec = PreprocessSpec.from_dict(sidecar["preprocess"])
    c, (h, w) = spec.channels, spec.size
    profile.set_shape(network.get_input(0).name, (1, c, h, w), (min(8, max_batch), c, h, w), (max_batch, c, h, w))
    config.add_optimization_profile(profile)
    if hasattr(builder, "build_serialized_network"):
        serialized = builder.build_serialized_network(network, config)
    else:  # TensorRT 7
        engine = builder.build_engine(network, config)
        serialized = engine.serialize() if engine is not None else None
    if serialized is None:
        raise ModelError(f"TensorRT failed to build an engine for {onnx_path.name} (see its log above)")
    engine_path.write_bytes(bytes(serialized))
    engine_path.with_suffix(".engine.json").write_text(json.dumps(sidecar, indent=2))
    return engine_path
