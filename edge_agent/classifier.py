"""Expression classification: a self-describing model file behind one backend interface.

A model file carries its class names and preprocessing in its ONNX metadata (DESIGN.md);
`load_model` reads them, checks them against the graph, and test-runs the model before
anything uses it, so a corrupt or mismatched file is refused with the reason instead of
producing nonsense. Backends: a TensorRT engine (where `tensorrt` imports and an engine
was built for this model) or ONNX Runtime with providers tried TensorRT → CUDA → CPU.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .labels import DEFAULT_VALENCE_MAP, decide, valence_matrix
from .preprocess import PreprocessSpec, normalize, to_model_pixels

log = logging.getLogger(__name__)

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class ModelError(RuntimeError):
    """A model file that cannot be used; the message says why."""


@dataclass(frozen=True)
class ModelInfo:
    path: str
    labels: tuple[str, ...]
    spec: PreprocessSpec
    arch: str
    version: str  # as reported to the server, e.g. "liexnet-fer2013@2"
    sha256: str
    metadata: dict


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_metadata(meta: dict, path: Path, version_hint: str | None = None) -> tuple:
    """(labels, spec, arch, version) from `affectwatch.*` metadata, or ModelError."""
    try:
        labels = json.loads(meta["affectwatch.labels"])
    except KeyError:
        raise ModelError(f"{path.name}: no affectwatch.labels in the model metadata") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path.name}: affectwatch.labels is not JSON ({exc})") from None
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ModelError(f"{path.name}: affectwatch.labels must be a non-empty list of class names")
    try:
        spec = PreprocessSpec.from_json(meta["affectwatch.preprocess"])
    except KeyError:
        raise ModelError(f"{path.name}: no affectwatch.preprocess in the model metadata") from None
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{path.name}: affectwatch.preprocess is invalid ({exc})") from None
    arch = meta.get("affectwatch.arch", "unknown")
    raw = meta.get("affectwatch.version", "")
    if version_hint:
        version = version_hint
    elif "@" in raw:
        version = raw
    else:
        version = f"{path.stem}@{raw or 'unversioned'}"
    return tuple(labels), spec, arch, version


class Backend:
    """Runs a float32 NCHW batch through the model; returns logits (N, C)."""

    name = "base"

    def run(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class OnnxRuntimeBackend(Backend):
    def __init__(self, path: Path, providers=PROVIDER_ORDER, threads: int = 1, cache_dir: str | Path | None = None):
        import onnxruntime as ort

        available = set(ort.get_available_providers())
        wanted: list = [p for p in providers if p in available] or ["CPUExecutionProvider"]
        if "TensorrtExecutionProvider" in wanted and cache_dir:
            # ONNX Runtime's TensorRT provider builds an engine when a session starts, which
            # takes minutes on a Jetson: cache it so that only the first start pays.
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            wanted[wanted.index("TensorrtExecutionProvider")] = ("TensorrtExecutionProvider", {
                "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache_dir), "trt_fp16_enable": "True"})
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # ONNX Runtime's idle threads spin by default; on a board's few cores that steals
        # the time the face detector and video decoding need (measured: 2x end to end).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        last_error = None
        # A provider that is present but broken (missing CUDA libraries, an old TensorRT)
        # fails at session creation: fall through to the next one.
        for i in range(len(wanted)):
            try:
                self.session = ort.InferenceSession(str(path), sess_options=opts, providers=wanted[i:])
                break
            except Exception as exc:  # noqa: BLE001 - ORT raises many kinds
                last_error = exc
                if not str(exc).strip():
                    continue
                name = wanted[i][0] if isinstance(wanted[i], tuple) else wanted[i]
                log.warning("ONNX Runtime with %s failed: %s", name, str(exc).splitlines()[0][:200])
        else:
            raise ModelError(f"{path.name}: ONNX Runtime cannot load it ({str(last_error).splitlines()[0][:300]})")
        self.provider = self.session.get_providers()[0]
        self.name = f"onnxruntime:{self.provider}"
        inp = self.session.get_inputs()
        if len(inp) != 1:
            raise ModelError(f"{path.name}: expected one input, the model has {len(inp)}")
        self.input_name = inp[0].name
        self.input_shape = inp[0].shape
        self.output_shape = self.session.get_outputs()[0].shape

    def metadata(self) -> dict:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


def _ort_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install raises more than ImportError
        return False
    return True


class TensorRTBackend(Backend):
    """A serialized TensorRT engine (built by `python -m edge_agent build-engine`).

    Device memory is handled through cuda-python (`cuda.cudart`), which JetPack ships
    alongside TensorRT; the engine needs a dynamic batch axis (build-engine makes one).
    """

    def __init__(self, engine_path: Path):
        try:
            import tensorrt as trt

            try:
                from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
            except ImportError:
                from cuda import cudart
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"TensorRT backend unavailable: {exc} (install cuda-python next to TensorRT)") from None
        self._trt, self._cudart = trt, cudart
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if engine is None:
            raise ModelError(f"{Path(engine_path).name}: TensorRT cannot deserialize it (built for another TensorRT or GPU?)")
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_name = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.max_batch = engine.get_tensor_profile_shape(self.input_name, 0)[2][0]
        _, self.stream = cudart.cudaStreamCreate()
        self._buffers: dict[str, tuple[int, int]] = {}
        self.name = "tensorrt"

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self._cudart.cudaFree(ptr)
            _, ptr = self._cudart.cudaMalloc(nbytes)
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, batch: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        outs = []
        for start in range(0, len(batch), self.max_batch):
            x = np.ascontiguousarray(batch[start:start + self.max_batch], dtype=np.float32)
            self.context.set_input_shape(self.input_name, x.shape)
            out_shape = tuple(self.context.get_tensor_shape(self.output_name))
            y = np.empty(out_shape, dtype=np.float32)
            d_in = self._buffer("in", x.nbytes)
            d_out = self._buffer("out", y.nbytes)
            self.context.set_tensor_address(self.input_name, d_in)
            self.context.set_tensor_address(self.output_name, d_out)
            cudart.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream)
            self.context.execute_async_v3(self.stream)
            cudart.cudaMemcpyAsync(y.ctypes.data, d_out, y.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream)
            cudart.cudaStreamSynchronize(self.stream)
            outs.append(y)
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Classifier:
    """A loaded, tested model: face crops in, class probabilities out."""

    def __init__(self, info: ModelInfo, backend: Backend, valence_map: dict[str, str] | None = None):
        self.info = info
        self.backend = backend
        self.labels = info.labels
        self.spec = info.spec
        mapping = dict(DEFAULT_VALENCE_MAP if valence_map is None else valence_map)
        missing = [label for label in self.labels if label not in mapping]
        if missing:
            raise ModelError(f"class(es) {missing} have no valence; add them to the [valence] table")
        self.group = valence_matrix(self.labels, mapping)  # (C, 3); see labels.decide
        self._local = threading.local()  # CLAHE objects are stateful: one per camera thread

    @property
    def version(self) -> str:
        return self.info.version

    def pixels(self, crop: np.ndarray, clahe: float = 0.0) -> np.ndarray:
        px = to_model_pixels(crop, self.spec)
        if clahe:
            eq = getattr(self._local, "clahe", None)
            if eq is None or eq.getClipLimit() != clahe:
                eq = self._local.clahe = cv2.createCLAHE(clipLimit=clahe, tileGridSize=(4, 4))
            if px.shape[2] == 1:
                px = eq.apply(px[:, :, 0])[:, :, None]
            else:
                lab = cv2.cvtColor(px, cv2.COLOR_RGB2LAB)
                lab[:, :, 0] = eq.apply(lab[:, :, 0])
                px = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
        return px

    def classify(self, crops: list[np.ndarray], clahe: float = 0.0) -> np.ndarray:
        """Probabilities (N, C) for face crops (uint8 gray or BGR), in one inference call."""
        if not crops:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        batch = normalize(np.stack([self.pixels(c, clahe) for c in crops]), self.spec)
        return softmax(self.backend.run(batch).astype(np.float32))

    def decide(self, probs: np.ndarray):
        """labels.decide with this model's grouping: (label index, its probability,
        valence index, valence probability), each (N,)."""
        return decide(probs, self.group)


#: Rolls smaller than this (degrees) are left alone: rotating costs more than it changes.
MIN_ROLL = 3.0


def crop_face(frame: np.ndarray, box, margin: float, roll: float = 0.0) -> np.ndarray:
    """The face box grown by `margin` on each side, clipped to the frame. With `roll`
    (the eye line's angle, degrees) the crop is rotated about the box's centre so the eyes
    are level, as in the aligned face crops FER data sets are made of."""
    x, y, w, h = (float(v) for v in box[:4])
    if abs(roll) >= MIN_ROLL:
        side = max(w, h) * (1 + 2 * margin)
        out = max(2, int(round(side)))
        m = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), roll, 1.0)
        m[:, 2] += (out / 2 - (x + w / 2), out / 2 - (y + h / 2))
        return cv2.warpAffine(frame, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mx, my = w * margin, h * margin
    H, W = frame.shape[:2]
    x0, y0 = max(int(round(x - mx)), 0), max(int(round(y - my)), 0)
    x1, y1 = min(int(round(x + w + mx)), W), min(int(round(y + h + my)), H)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return frame[0:2, 0:2]
    return frame[y0:y1, x0:x1]


def _check_shapes(backend, info: ModelInfo, path: Path) -> None:
    in_shape = getattr(backend, "input_shape", None)
    if in_shape is not None and len(in_shape) == 4:
        c, h, w = in_shape[1:]
        if isinstance(c, int) and c != info.spec.channels:
            raise ModelError(f"{path.name}: the input has {c} channel(s) but affectwatch.preprocess says "
                             f"{info.spec.channels} ({info.spec.color})")
        if isinstance(h, int) and isinstance(w, int) and (h, w) != tuple(info.spec.size):
            raise ModelError(f"{path.name}: the input is {h}x{w} but affectwatch.preprocess says "
                             f"{info.spec.size[0]}x{info.spec.size[1]}")
    elif in_shape is not None:
        raise ModelError(f"{path.name}: expected an NCHW input, the model's is {in_shape}")
    out_shape = getattr(backend, "output_shape", None)
    if out_shape is not None and len(out_shape) == 2 and isinstance(out_shape[1], int) and out_shape[1] != len(info.labels):
        raise ModelError(f"{path.name}: the model outputs {out_shape[1]} classes but affectwatch.labels names "
                         f"{len(info.labels)}")


def self_test(clf: Classifier) -> None:
    """Run the model on a small batch; a model that fails or answers garbage is refused."""
    h, w = clf.spec.size
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (h, w), dtype=np.uint8) for _ in range(2)]
    try:
        logits = clf.backend.run(normalize(np.stack([clf.pixels(c) for c in crops]), clf.spec))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{Path(clf.info.path).name}: the test run failed ({str(exc).splitlines()[0][:300]})") from None
    logits = np.asarray(logits)
    if logits.shape != (2, len(clf.labels)):
        raise ModelError(f"{Path(clf.info.path).name}: the test run returned shape {logits.shape}, "
                         f"expected (2, {len(clf.labels)})")
    if not np.all(np.isfinite(logits)):
        raise ModelError(f"{Path(clf.info.path).name}: the test run returned non-finite values")


def load_model(path: str | Path, backend: str = "auto", providers=PROVIDER_ORDER, engine: str | Path | None = None,
               threads: int = 1, valence_map: dict | None = None, version: str | None = None,
               cache_dir: str | Path | None = None) -> Classifier:
    """Load, check and test-run a model file; ModelError says why one is refused."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} not found")
    digest = sha256_of(path)
    # Metadata and shapes are checked on a plain CPU session: cheap, and a file that fails
    # here is refused before any GPU provider spends minutes building an engine for it.
    cpu = OnnxRuntimeBackend(path, ["CPUExecutionProvider"], threads)
    labels, spec, arch, ver = read_metadata(cpu.metadata(), path, version)
    info = ModelInfo(str(path), labels, spec, arch, ver, digest, cpu.metadata())
    _check_shapes(cpu, info, path)
    chosen: Backend = cpu
    engine_path = Path(engine) if engine else path.with_suffix(".engine")
    if backend in ("auto", "tensorrt") and engine_path.is_file() and tensorrt_available():
        try:
            side = json.loads(engine_path.with_suffix(".engine.json").read_text())
            if side.get("onnx_sha256") != digest:
                raise ModelError(f"{engine_path.name} was built from another model file; rebuild it")
            chosen = TensorRTBackend(engine_path)
        except (ModelError, OSError, ValueError) as exc:
            if backend == "tensorrt":
                raise ModelError(str(exc)) from None
            log.warning("TensorRT engine not used: %s", exc)
    elif backend == "tensorrt":
        reason = "tensorrt does not import" if not tensorrt_available() else f"no engine at {engine_path}"
        raise ModelError(f"model.backend is 'tensorrt' but {reason} (run `python -m edge_agent build-engine`)")
    if chosen is cpu and set(providers) & set(_ort_providers()) - {"CPUExecutionProvider"}:
        accelerated = OnnxRuntimeBackend(path, providers, threads, cache_dir)
        if accelerated.provider != "CPUExecutionProvider":
            chosen = accelerated
    clf = Classifier(info, chosen, valence_map)
    self_test(clf)
    log.info("model %s (%s, %d classes) on %s", info.version, info.arch, len(labels), chosen.name)
    return clf
