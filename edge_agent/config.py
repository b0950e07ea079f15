"""The agent's configuration: a TOML file, checked key by key.

Every problem is reported as one line that names the key (`detector.detect_every must be
an integer >= 1, got 0`), because the person reading it is a field tech on a serial
console, not a Python developer.
"""
from __future__ import annotations

import copy
import os
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

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


# Each key declares its limit (and, where the docs table is generated, its help) once, on
# its field: `check_section` reads them, so a limit is never far from the key it limits.
@dataclass(frozen=True)
class Limit:
    """What a value must be: `ok(value)` is True for a valid value; `what` completes
    "<key> must be …" in the error message."""
    what: str
    ok: Callable[[Any], bool]


def at_least(n: float, what: str | None = None) -> Limit:
    return Limit(what or f">= {n}", lambda v: v >= n)


def above(n: float, what: str | None = None) -> Limit:
    return Limit(what or f"> {n}", lambda v: v > n)


def between(lo: float, hi: float, what: str | None = None, *, open_low: bool = False, open_high: bool = False) -> Limit:
    def ok(v):
        return (lo < v if open_low else lo <= v) and (v < hi if open_high else v <= hi)
    return Limit(what or f"between {lo} and {hi}", ok)


def one_of(*choices: str, what: str | None = None) -> Limit:
    return Limit(what or ", ".join(f"'{c}'" for c in choices[:-1]) + f" or '{choices[-1]}'", lambda v: v in choices)


def setting(default: Any = MISSING, help: str = "", limit: Limit | None = None, *, factory=MISSING):
    """A config key as a dataclass field: its default, its help (one line, as the
    field-tech docs' table shows it) and its limit, checked by `check_section`."""
    return field(default=default, default_factory=factory, metadata={"help": help, "limit": limit})


def check_section(prefix: str, section: Any) -> None:
    """Checks every field of a section against its declared `Limit`, then the section's
    own cross-field rules (a `check(prefix)` method). Raises ConfigError naming the key."""
    for f in fields(section):
        limit = f.metadata.get("limit")
        value = getattr(section, f.name)
        if limit is not None and not limit.ok(value):
            raise ConfigError(f"{prefix}.{f.name} must be {limit.what}, got {value!r}")
    extra = getattr(section, "check", None)
    if callable(extra):
        extra(prefix)


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass
class AgentSection:
    name: str = ""
    state_dir: str = ""  # empty: $AFFECTWATCH_STATE_DIR, /var/lib/affectwatch or ~/.local/state/affectwatch
    credentials: str = ""  # empty: <state_dir>/credentials.json
    log_level: str = setting("INFO", limit=Limit("DEBUG, INFO, WARNING or ERROR", lambda v: v.upper() in _LOG_LEVELS))
    heartbeat_interval_s: float = setting(0.0, limit=at_least(0))  # 0: what enrollment said (30 s by default)


@dataclass
class ModelSection:
    path: str = ""  # empty: the shipped edge_agent/models/liexnet-fer2013.onnx
    backend: str = setting("auto", limit=one_of("auto", "tensorrt", "onnxruntime"))
    providers: list = field(
        default_factory=lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    engine: str = ""  # a TensorRT engine built by `build-engine`; empty: <model>.engine if present
    # ONNX Runtime CPU threads; a ~42k-parameter model needs one, the detector wants the rest
    threads: int = setting(1, limit=at_least(0))


# Keys that lived in [detector] before each detector had its own table; still read there.
LEGACY_DETECTOR_KEYS = {"scale_factor": "haar", "min_neighbors": "haar", "score_threshold": "yunet"}


def _detector_kinds() -> dict:
    # Imported here: the registry lives with the detectors (OpenCV), which import this module.
    from .detectors import DETECTORS
    return DETECTORS


@dataclass(init=False)
class DetectorSection:
    """`[detector]`: the keys every detector shares, and one `[detector.<name>]` table of
    options per registered detector (`options[name]`, that detector's `Options`).

    The constructor also takes a detector's options as flat keywords
    (`DetectorSection(kind="haar", min_neighbors=3)`), as today's `[detector]` tables
    may; an option no detector declares raises ConfigError."""
    kind: str = setting("auto", "`auto`: YuNet if `model` is set, else Haar; or `haar`, `yunet`")
    model: str = setting(
        "", "the detector's model file, for detectors that need one: YuNet's "
        "(`face_detection_yunet_2023mar.onnx` from OpenCV Zoo, github.com/opencv/opencv_zoo, MIT licence; copy it "
        "to the board, e.g. `/opt/models/`) — finds turned and partly hidden faces Haar misses; with "
        "`kind = \"auto\"` (the default) setting it switches the board to YuNet")
    detect_every: int = setting(
        6, "detect on one frame in N and follow faces in between (the big speed lever)",
        at_least(1, "an integer >= 1"))
    min_face: int = setting(
        48, "faces smaller than this many pixels are ignored (too few pixels to read an expression)",
        at_least(8, "an integer >= 8"))
    detect_width: int = setting(
        320, "frames are shrunk to this width for detection (0: full size, slower)",
        Limit("0 or >= 64", lambda v: v == 0 or v >= 64))
    options: dict = field(default_factory=dict)

    def __init__(self, kind: str = "auto", model: str = "", detect_every: int = 6, min_face: int = 48,
                 detect_width: int = 320, options: dict | None = None, **flat):
        self.kind, self.model = kind, model
        self.detect_every, self.min_face, self.detect_width = detect_every, min_face, detect_width
        kinds = _detector_kinds()
        self.options = {name: copy.deepcopy((options or {}).get(name) or cls.Options()) for name, cls in kinds.items()}
        for key, value in flat.items():
            owner = next((n for n, o in self.options.items() if key in {f.name for f in fields(o)}), None)
            if owner is None:
                raise ConfigError(f"detector.{key} is not a known key (known: {', '.join(self.known_keys())})")
            setattr(self.options[owner], key, value)

    def known_keys(self) -> list[str]:
        return sorted([f.name for f in fields(self) if f.name != "options"] + list(self.options))

    def check(self, prefix: str) -> None:
        kinds = _detector_kinds()
        if self.kind != "auto" and self.kind not in kinds:
            raise ConfigError(f"{prefix}.kind must be 'auto' or one of {', '.join(map(repr, sorted(kinds)))}, "
                              f"got {self.kind!r}")
        if self.kind != "auto" and kinds[self.kind].needs_model and not self.model:
            raise ConfigError(f"{prefix}.model must be the path of a {kinds[self.kind].title} model file "
                              f"when {prefix}.kind is '{self.kind}'")
        for name, opts in self.options.items():
            check_section(f"{prefix}.{name}", opts)

    def chosen(self) -> str:
        """The detector `kind` names; `auto`: YuNet when a model is configured, else Haar."""
        if self.kind == "auto":
            return "yunet" if self.model else "haar"
        return self.kind


@dataclass
class TrackerSection:
    iou_threshold: float = setting(0.3, limit=between(0.0, 1.0, open_low=True, open_high=True))
    # detections needed before a track emits (filters one-off false positives)
    min_hits: int = setting(2, limit=at_least(1))
    max_missed: int = setting(2, limit=at_least(0))  # detection rounds a track may miss before it ends
    follow: bool = True  # move boxes between detections by template matching


@dataclass
class ClassifierSection:
    margin: float = setting(0.1, limit=between(0.0, 1.0))  # crop margin, as a fraction of the face box on each side
    clahe: bool = False
    clahe_clip: float = setting(2.0, limit=above(0))
    align: bool = True  # rotate crops so the eyes are level, where the detector gives eye landmarks (YuNet)


@dataclass
class SmoothingSection:
    method: str = setting("ema", limit=one_of("ema", "window"))
    alpha: float = setting(0.3, limit=between(0.0, 1.0, "in (0, 1]", open_low=True))  # ema weight of the newest frame
    window: int = setting(10, limit=at_least(1))  # frames, for method = "window"
    emit_interval_s: float = setting(1.0, limit=at_least(0))  # at most one event per track per interval
    # frames a track is seen before its first event (keeps brief false detections quiet)
    min_frames: int = setting(8, limit=at_least(1))


@dataclass
class OutboxSection:
    path: str = ""  # empty: <state_dir>/outbox.sqlite3
    # disk budget; when full, the oldest events are dropped and counted
    max_mb: float = setting(256.0, limit=above(0))
    batch_size: int = setting(200, limit=between(1, 5000))


@dataclass
class PublisherSection:
    backoff_base_s: float = setting(1.0, limit=above(0))
    backoff_max_s: float = 60.0
    timeout_s: float = setting(10.0, limit=above(0))
    # gather events this long after an idle spell, then send them in one request
    linger_s: float = setting(1.0, limit=between(0, 60))

    def check(self, prefix: str) -> None:
        if self.backoff_max_s < self.backoff_base_s:
            raise ConfigError(f"{prefix}.backoff_max_s must be >= {prefix}.backoff_base_s, got {self.backoff_max_s!r}")


@dataclass
class CameraSection:
    name: str = setting("", limit=Limit("1 to 64 characters", lambda v: 0 < len(v) <= 64))
    # 0 | /dev/video0 | file.mp4 | rtsp://… | csi://0 | a GStreamer pipeline
    source: str = setting("", limit=Limit("a camera index, device, file, URL or pipeline", bool))
    kind: str = setting("auto", limit=one_of("auto", "index", "v4l2", "file", "rtsp", "gstreamer",
                                             what="auto, index, v4l2, file, rtsp or gstreamer"))
    width: int = setting(0, limit=at_least(0))
    height: int = setting(0, limit=at_least(0))
    fps: float = setting(0.0, limit=at_least(0))
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
    if cls is DetectorSection:
        return _load_detector(prefix, data)
    inst = cls()
    known = {f.name for f in fields(cls)}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{prefix}.{key} is not a known key (known: {', '.join(sorted(known))})")
        setattr(inst, key, _coerce(f"{prefix}.{key}", value, getattr(inst, key)))
    return inst


def _load_detector(prefix: str, data: dict) -> DetectorSection:
    """`[detector]` and its `[detector.<name>]` tables. A detector's option given flat in
    `[detector]` (today's files: `min_neighbors = 3`) is read into that detector's table;
    the same option in both places is refused, naming both keys."""
    inst = DetectorSection()
    shared = {f.name for f in fields(inst)} - {"options"}
    for key, value in data.items():
        if key in inst.options:
            inst.options[key] = _load_section(f"{prefix}.{key}", type(inst.options[key]), value)
    for key, value in data.items():
        if key in inst.options:
            continue
        if key in shared:
            setattr(inst, key, _coerce(f"{prefix}.{key}", value, getattr(inst, key)))
        elif key in LEGACY_DETECTOR_KEYS:
            owner = LEGACY_DETECTOR_KEYS[key]
            if key in (data.get(owner) or {}):
                raise ConfigError(f"{prefix}.{key} is also set as {prefix}.{owner}.{key}; keep only the latter")
            opts = inst.options[owner]
            setattr(opts, key, _coerce(f"{prefix}.{owner}.{key}", value, getattr(opts, key)))
        else:
            raise ConfigError(f"{prefix}.{key} is not a known key (known: {', '.join(inst.known_keys())})")
    return inst


def _check_range(cfg: Config) -> None:
    for name in SECTIONS:
        check_section(name, getattr(cfg, name))
    for label, group in cfg.valence.items():
        if group not in VALENCE_CLASSES:
            raise ConfigError(f"valence.{label} must be negative, neutral or positive, got {group!r}")
    names = set()
    for i, cam in enumerate(cfg.cameras):
        check_section(f"cameras[{i}]", cam)
        if cam.name in names:
            raise ConfigError(f"cameras[{i}].name must be unique among cameras, got {cam.name!r}")
        names.add(cam.name)


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
