"""The agent's configuration: a TOML file, checked key by key.

Every problem is reported as one line that names the key (`detector.detect_every must be
an integer >= 1, got 0`), because the person reading it is a field tech on a serial
console, not a Python developer.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .labels import DEFAULT_VALENCE_MAP, VALENCE_CLASSES

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6's system Python)
    import tomli as tomllib

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "liexnet-fer2013.onnx"


def default_state_dir() -> Path:
    env = os.environ.get("AFFECTWATCH_STATE_DIR")
    if env:
        return Path(env)
    system = Path("/var/lib/affectwatch")
    if system.is_dir() and os.access(system, os.W_OK):
        return system
    return Path.home() / ".local" / "state" / "affectwatch"


class ConfigError(ValueError):
    """An invalid configuration; the message is one line naming the key."""


@dataclass
class AgentSection:
    name: str = ""
    state_dir: str = ""  # empty: $AFFECTWATCH_STATE_DIR, /var/lib/affectwatch or ~/.local/state/affectwatch
    credentials: str = ""  # empty: <state_dir>/credentials.json
    log_level: str = "INFO"
    heartbeat_interval_s: float = 0.0  # 0: what enrollment said (30 s by default)


@dataclass
class ModelSection:
    path: str = ""  # empty: the shipped edge_agent/models/liexnet-fer2013.onnx
    backend: str = "auto"  # auto | tensorrt | onnxruntime
    providers: list = field(
        default_factory=lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    engine: str = ""  # a TensorRT engine built by `build-engine`; empty: <model>.engine if present
    threads: int = 1  # ONNX Runtime CPU threads; a ~42k-parameter model needs one, the detector wants the rest


@dataclass
class DetectorSection:
    kind: str = "auto"  # auto (YuNet when `model` is set, else Haar) | haar | yunet
    model: str = ""  # a YuNet .onnx file (face_detection_yunet_2023mar.onnx)
    detect_every: int = 6  # run the detector on one frame in N, track in between
    min_face: int = 48  # faces smaller than this (pixels, full frame) are skipped
    detect_width: int = 320  # frames are downscaled to this width for detection; 0: full size
    scale_factor: float = 1.1  # Haar
    min_neighbors: int = 5  # Haar
    score_threshold: float = 0.7  # YuNet


@dataclass
class TrackerSection:
    iou_threshold: float = 0.3
    min_hits: int = 2  # detections needed before a track emits (filters one-off false positives)
    max_missed: int = 2  # detection rounds a track may miss before it ends
    follow: bool = True  # move boxes between detections by template matching


@dataclass
class ClassifierSection:
    margin: float = 0.1  # crop margin, as a fraction of the face box on each side
    clahe: bool = False
    clahe_clip: float = 2.0
    align: bool = True  # rotate crops so the eyes are level, where the detector gives eye landmarks (YuNet)


@dataclass
class SmoothingSection:
    method: str = "ema"  # ema | window
    alpha: float = 0.3  # ema weight of the newest frame
    window: int = 10  # frames, for method = "window"
    emit_interval_s: float = 1.0  # at most one event per track per interval
    min_frames: int = 8  # frames a track is seen before its first event (keeps brief false detections quiet)


@dataclass
class OutboxSection:
    path: str = ""  # empty: <state_dir>/outbox.sqlite3
    max_mb: float = 256.0  # disk budget; when full, the oldest events are dropped and counted
    batch_size: int = 200


@dataclass
class PublisherSection:
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    timeout_s: float = 10.0
    linger_s: float = 1.0  # gather events this long after an idle spell, then send them in one request


@dataclass
class CameraSection:
    name: str = ""
    source: str = ""  # 0 | /dev/video0 | file.mp4 | rtsp://… | csi://0 | a GStreamer pipeline
    kind: str = "auto"  # auto | index | v4l2 | file | rtsp | gstreamer
    width: int = 0
    height: int = 0
    fps: float = 0.0
    loop: bool = False  # files: start again at the end
    realtime: bool = True  # files: pace at the file's frame rate like a camera would
    enabled: bool = True


@dataclass
class Config:
    agent: AgentSection = field(default_factory=AgentSection)
    model: ModelSection = field(default_factory=ModelSection)
    detector: DetectorSection = field(default_factory=DetectorSection)
    tracker: TrackerSection = field(default_factory=TrackerSection)
    classifier: ClassifierSection = field(default_factory=ClassifierSection)
    smoothing: SmoothingSection = field(default_factory=SmoothingSection)
    outbox: OutboxSection = field(default_factory=OutboxSection)
    publisher: PublisherSection = field(default_factory=PublisherSection)
    valence: dict = field(default_factory=lambda: dict(DEFAULT_VALENCE_MAP))
    cameras: list = field(default_factory=list)
    source_file: str = ""

    # Resolved paths -------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return Path(self.agent.state_dir).expanduser() if self.agent.state_dir else default_state_dir()

    @property
    def credentials_path(self) -> Path:
        return Path(self.agent.credentials).expanduser() if self.agent.credentials else self.state_dir / "credentials.json"

    @property
    def outbox_path(self) -> Path:
        return Path(self.outbox.path).expanduser() if self.outbox.path else self.state_dir / "outbox.sqlite3"

    @property
    def model_path(self) -> Path:
        return Path(self.model.path).expanduser() if self.model.path else DEFAULT_MODEL


SECTIONS = {f.name: f for f in fields(Config) if f.name not in ("valence", "cameras", "source_file")}

# Keys the server may override in a heartbeat answer (flat names, as in docs/edge-protocol.md).
REMOTE_KEYS = {
    "detect_every": ("detector", "detect_every"),
    "min_face": ("detector", "min_face"),
    "detect_width": ("detector", "detect_width"),
    "emit_interval_s": ("smoothing", "emit_interval_s"),
    "alpha": ("smoothing", "alpha"),
    "smoothing_alpha": ("smoothing", "alpha"),
    "min_frames": ("smoothing", "min_frames"),
    "margin": ("classifier", "margin"),
    "clahe": ("classifier", "clahe"),
    "min_hits": ("tracker", "min_hits"),
    "batch_size": ("outbox", "batch_size"),
    "heartbeat_interval_s": ("agent", "heartbeat_interval_s"),
}


def _type_name(t) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}[t]


def _coerce(key: str, value: Any, default: Any) -> Any:
    t = type(default)
    if t is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if t is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if t is str:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # `source = 0` means camera index 0
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if t is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} must be a list of strings, got {value!r}")
        return list(value)
    raise ConfigError(f"{key}: unsupported value {value!r}")  # pragma: no cover


def _load_section(prefix: str, cls, data: Any):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix} must be a table, got {data!r}")
    inst = cls()
    known = {f.name for f in fields(cls)}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{prefix}.{key} is not a known key (known: {', '.join(sorted(known))})")
        setattr(inst, key, _coerce(f"{prefix}.{key}", value, getattr(inst, key)))
    return inst


def _check_range(cfg: Config) -> None:
    def need(cond: bool, key: str, what: str, value: Any) -> None:
        if not cond:
            raise ConfigError(f"{key} must be {what}, got {value!r}")

    d, t, c, s, o, p, m = cfg.detector, cfg.tracker, cfg.classifier, cfg.smoothing, cfg.outbox, cfg.publisher, cfg.model
    need(d.kind in ("auto", "haar", "yunet"), "detector.kind", "'auto', 'haar' or 'yunet'", d.kind)
    need(d.kind != "yunet" or bool(d.model), "detector.model", "the path of a YuNet .onnx file when detector.kind is 'yunet'", d.model)
    need(d.detect_every >= 1, "detector.detect_every", "an integer >= 1", d.detect_every)
    need(d.min_face >= 8, "detector.min_face", "an integer >= 8", d.min_face)
    need(d.detect_width == 0 or d.detect_width >= 64, "detector.detect_width", "0 or >= 64", d.detect_width)
    need(d.scale_factor > 1.0, "detector.scale_factor", "> 1.0", d.scale_factor)
    need(d.min_neighbors >= 0, "detector.min_neighbors", ">= 0", d.min_neighbors)
    need(0.0 < d.score_threshold < 1.0, "detector.score_threshold", "between 0 and 1", d.score_threshold)
    need(0.0 < t.iou_threshold < 1.0, "tracker.iou_threshold", "between 0 and 1", t.iou_threshold)
    need(t.min_hits >= 1, "tracker.min_hits", ">= 1", t.min_hits)
    need(t.max_missed >= 0, "tracker.max_missed", ">= 0", t.max_missed)
    need(0.0 <= c.margin <= 1.0, "classifier.margin", "between 0 and 1", c.margin)
    need(c.clahe_clip > 0, "classifier.clahe_clip", "> 0", c.clahe_clip)
    need(s.method in ("ema", "window"), "smoothing.method", "'ema' or 'window'", s.method)
    need(0.0 < s.alpha <= 1.0, "smoothing.alpha", "in (0, 1]", s.alpha)
    need(s.window >= 1, "smoothing.window", ">= 1", s.window)
    need(s.emit_interval_s >= 0, "smoothing.emit_interval_s", ">= 0", s.emit_interval_s)
    need(s.min_frames >= 1, "smoothing.min_frames", ">= 1", s.min_frames)
    need(o.max_mb > 0, "outbox.max_mb", "> 0", o.max_mb)
    need(1 <= o.batch_size <= 5000, "outbox.batch_size", "between 1 and 5000", o.batch_size)
    need(p.backoff_base_s > 0, "publisher.backoff_base_s", "> 0", p.backoff_base_s)
    need(p.backoff_max_s >= p.backoff_base_s, "publisher.backoff_max_s", ">= publisher.backoff_base_s", p.backoff_max_s)
    need(p.timeout_s > 0, "publisher.timeout_s", "> 0", p.timeout_s)
    need(0 <= p.linger_s <= 60, "publisher.linger_s", "between 0 and 60", p.linger_s)
    need(m.backend in ("auto", "tensorrt", "onnxruntime"), "model.backend", "'auto', 'tensorrt' or 'onnxruntime'", m.backend)
    need(m.threads >= 0, "model.threads", ">= 0", m.threads)
    need(cfg.agent.heartbeat_interval_s >= 0, "agent.heartbeat_interval_s", ">= 0", cfg.agent.heartbeat_interval_s)
    need(cfg.agent.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"), "agent.log_level",
         "DEBUG, INFO, WARNING or ERROR", cfg.agent.log_level)
    for label, group in cfg.valence.items():
        need(group in VALENCE_CLASSES, f"valence.{label}", "negative, neutral or positive", group)
    names = set()
    for i, cam in enumerate(cfg.cameras):
        key = f"cameras[{i}]"
        need(0 < len(cam.name) <= 64, f"{key}.name", "1 to 64 characters", cam.name)
        need(cam.name not in names, f"{key}.name", "unique among cameras", cam.name)
        names.add(cam.name)
        need(bool(cam.source), f"{key}.source", "a camera index, device, file, URL or pipeline", cam.source)
        need(cam.kind in ("auto", "index", "v4l2", "file", "rtsp", "gstreamer"), f"{key}.kind",
             "auto, index, v4l2, file, rtsp or gstreamer", cam.kind)
        need(cam.width >= 0 and cam.height >= 0 and cam.fps >= 0, f"{key}.width/height/fps", ">= 0",
             (cam.width, cam.height, cam.fps))


def from_dict(data: dict, source_file: str = "") -> Config:
    cfg = Config(source_file=source_file)
    for key, value in data.items():
        if key in SECTIONS:
            setattr(cfg, key, _load_section(key, type(getattr(cfg, key)), value))
        elif key == "valence":
            if not isinstance(value, dict):
                raise ConfigError(f"valence must be a table of class = group, got {value!r}")
            mapping = dict(DEFAULT_VALENCE_MAP)
            for label, group in value.items():
                if not isinstance(group, str):
                    raise ConfigError(f"valence.{label} must be a string, got {group!r}")
                mapping[label] = group
            cfg.valence = mapping
        elif key == "cameras":
            if not isinstance(value, list):
                raise ConfigError("cameras must be an array of tables ([[cameras]])")
            cfg.cameras = [_load_section(f"cameras[{i}]", CameraSection, c) for i, c in enumerate(value)]
            for i, cam in enumerate(cfg.cameras):
                if not cam.name:
                    cam.name = f"cam{i}"
        else:
            raise ConfigError(f"{key} is not a known section (known: {', '.join(sorted([*SECTIONS, 'valence', 'cameras']))})")
    _check_range(cfg)
    return cfg


def load(path: str | os.PathLike) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return from_dict(data, source_file=str(path))


def apply_remote(cfg: Config, overrides: dict) -> tuple[Config, list[str], list[str]]:
    """A copy of `cfg` with the server's overrides applied.

    Returns (new config, changed keys, ignored keys with reasons). An invalid value is
    ignored (and reported) rather than applied, so a bad server setting cannot stop a board.
    """
    new = copy.deepcopy(cfg)
    changed, ignored = [], []
    for key, value in (overrides or {}).items():
        target = REMOTE_KEYS.get(key)
        if target is None:
            ignored.append(f"{key}: not a remotely configurable key")
            continue
        section, attr = target
        trial = copy.deepcopy(new)
        sec = getattr(trial, section)
        try:
            setattr(trial, section, replace(sec, **{attr: _coerce(key, value, getattr(sec, attr))}))
            _check_range(trial)
        except ConfigError as exc:
            ignored.append(f"{key}={value!r} refused: {exc}")
            continue
        if getattr(getattr(new, section), attr) != getattr(getattr(trial, section), attr):
            changed.append(key)
        new = trial
    return new, changed, ignored
