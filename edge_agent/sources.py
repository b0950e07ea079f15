"""Cameras: open any source OpenCV can read, and keep only the newest frame.

A camera runs in its own reader thread. Live sources are read as fast as they deliver and
a frame the pipeline has not taken before the next one arrives is dropped (counted), so a
slow pipeline processes the present instead of falling further and further behind. A
camera that cannot be opened or stops delivering is retried with backoff; its status and
error are what the heartbeat reports, and the other cameras keep running.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .config import CameraSection

log = logging.getLogger(__name__)


def csi_pipeline(sensor_id: int, width: int = 1280, height: int = 720, fps: float = 30) -> str:
    """A GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc) ending in BGR appsink."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, framerate=(fraction){int(fps)}/1 ! "
        "nvvidconv ! video/x-raw, format=(string)BGRx ! videoconvert ! video/x-raw, format=(string)BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


def redact(text: str) -> str:
    """Hide passwords in camera URLs (rtsp://user:secret@host → rtsp://user:***@host)
    before they reach a log line or a heartbeat."""
    return re.sub(r"(://[^/:@\s]+):[^@/\s]*@", r"\1:***@", text)


def resolve_source(cam: CameraSection) -> tuple[str, object]:
    """(kind, argument for cv2.VideoCapture) for a camera's `source`."""
    src = cam.source.strip()
    kind = cam.kind
    if kind == "auto":
        if re.fullmatch(r"\d+", src):
            kind = "index"
        elif src.startswith("/dev/video"):
            kind = "v4l2"
        elif re.match(r"^(rtsp|rtsps|rtmp|http|https)://", src):
            kind = "rtsp"
        elif src.startswith("csi://") or src.startswith("gst:") or " ! " in src:
            kind = "gstreamer"
        else:
            kind = "file"
    if kind == "index":
        return kind, int(src)
    if kind == "gstreamer":
        if src.startswith("csi://"):
            sensor = int(src[len("csi://"):] or 0)
            src = csi_pipeline(sensor, cam.width or 1280, cam.height or 720, cam.fps or 30)
        elif src.startswith("gst:"):
            src = src[len("gst:"):].strip()
        return kind, src
    return kind, src


OPEN_TIMEOUT_MS = 10_000
READ_TIMEOUT_MS = 5_000
STALL_S = 10.0  # a camera "ok" that has not delivered a frame for this long is reported as stalled

_BACKENDS = {"index": cv2.CAP_ANY, "v4l2": cv2.CAP_V4L2, "rtsp": cv2.CAP_FFMPEG, "file": cv2.CAP_ANY,
             "gstreamer": cv2.CAP_GSTREAMER}


def open_capture(cam: CameraSection) -> cv2.VideoCapture:
    """An opened cv2.VideoCapture, or OSError naming why not."""
    kind, arg = resolve_source(cam)
    if kind == "file" and not Path(arg).exists():
        raise OSError(f"cannot open {redact(str(arg))}: no such file")
    if kind == "gstreamer" and not re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()):
        raise OSError("cannot open a GStreamer pipeline: this OpenCV build has no GStreamer support "
                      "(on a Jetson use the system python3-opencv from JetPack)")
    if kind == "rtsp":
        # FFmpeg waits 30 s by default on a dead network camera; fail sooner and retry.
        cap = cv2.VideoCapture(arg, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
                                                     cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS])
    else:
        cap = cv2.VideoCapture(arg, _BACKENDS[kind])
    if not cap.isOpened():
        cap.release()
        raise OSError(f"cannot open {redact(cam.source)}")
    if kind in ("index", "v4l2"):
        if cam.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, cam.width)
        if cam.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cam.height)
        if cam.fps:
            cap.set(cv2.CAP_PROP_FPS, cam.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return cap


@dataclass
class Frame:
    image: np.ndarray
    seq: int  # 1, 2, 3 … as read from the source
    ts: float  # wall-clock time of capture (time.time())


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._times: list[float] = []
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._times.append(now)
            cutoff = now - self.window_s
            if self._times[0] < cutoff:
                i = 0
                while i < len(self._times) and self._times[i] < cutoff:
                    i += 1
                del self._times[:i]

    def rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            times = [t for t in self._times if t >= now - self.window_s]
        if len(times) < 2:
            return 0.0
        span = max(now - times[0], 1e-6)
        return (len(times) - 1) / span if span > 0 else 0.0


class CameraReader:
    """A reader thread for one camera that keeps only the newest frame.

    `wait_frame(after_seq)` hands the newest frame newer than `after_seq` to the pipeline.
    For a file with `realtime = false` the reader waits for the pipeline instead of
    dropping (every frame processed: `classify`, benches).
    """

    def __init__(self, cam: CameraSection, retry_max_s: float = 30.0):
        self.cam = cam
        self.name = cam.name
        self.retry_max_s = retry_max_s
        self.status = "starting"  # starting | ok | error | ended | stopped
        self.error: str | None = None
        self.frames_read = 0
        self.frames_dropped = 0  # stale frames replaced before the pipeline took them
        self.reconnects = 0
        self.last_frame_at: float | None = None
        self.read_rate = RateMeter()
        self._latest: Frame | None = None
        self._taken_seq = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{cam.name}", daemon=True)

    # Lifecycle --------------------------------------------------------------------------
    def start(self) -> "CameraReader":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        if self.status not in ("ended",):
            self.status = "stopped"

    def stalled_for(self) -> float:
        """Seconds since the last frame of a camera that is supposed to be delivering."""
        if self.status != "ok" or self.last_frame_at is None:
            return 0.0
        return time.monotonic() - self.last_frame_at

    @property
    def finished(self) -> bool:
        """True when the source has ended and its last frame was taken."""
        with self._cond:
            return self.status in ("ended", "stopped") and (self._latest is None or self._latest.seq <= self._taken_seq)

    # Consumer side ----------------------------------------------------------------------
    def wait_frame(self, after_seq: int, timeout: float = 0.5) -> Frame | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._latest is None or self._latest.seq <= after_seq:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set() or self.status == "ended":
                    if self._latest is not None and self._latest.seq > after_seq:
                        break
                    return None
                self._cond.wait(left)
            frame = self._latest
            self._taken_seq = frame.seq
            self._cond.notify_all()
            return frame

    # Reader side ------------------------------------------------------------------------
    def _publish(self, image: np.ndarray, lossless: bool) -> None:
        with self._cond:
            if lossless:
                while (self._latest is not None and self._latest.seq > self._taken_seq
                       and not self._stop.is_set()):
                    self._cond.wait(0.1)
            elif self._latest is not None and self._latest.seq > self._taken_seq:
                self.frames_dropped += 1
            self.frames_read += 1
            self._latest = Frame(image, self.frames_read, time.time())
            self.last_frame_at = time.monotonic()
            self._cond.notify_all()
        self.read_rate.tick()

    def _run(self) -> None:
        delay = 1.0
        kind = resolve_source(self.cam)[0]
        is_file = kind == "file"
        lossless = is_file and not self.cam.realtime
        while not self._stop.is_set():
            try:
                cap = open_capture(self.cam)
            except OSError as exc:
                self._fail(str(exc))
                self._stop.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            if self.status == "error":
                self.reconnects += 1
                log.info("camera %s: reconnected", self.name)
            self.status, self.error = "ok", None
            self.last_frame_at = time.monotonic()
            period = 0.0
            if is_file and self.cam.realtime:
                fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
                period = 1.0 / (self.cam.fps or (fps if 1 <= fps <= 240 else 30.0))
            next_t = time.monotonic()
            got_any = False
            while not self._stop.is_set():
                ok, image = cap.read()
                if not ok or image is None:
                    break
                got_any = True
                delay = 1.0
                if period:
                    next_t += period
                    pause = next_t - time.monotonic()
                    if pause > 0:
                        self._stop.wait(pause)
                    else:
                        next_t = time.monotonic()
                self._publish(image, lossless)
            cap.release()
            if self._stop.is_set():
                break
            if is_file:
                if self.cam.loop and got_any:
                    continue
                if not got_any:
                    self._fail(f"cannot read frames from {redact(self.cam.source)}")
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.retry_max_s)
                    continue
                log.info("camera %s: end of %s", self.name, redact(self.cam.source))
                with self._cond:
                    self.status = "ended"
                    self._cond.notify_all()
                return
            self._fail(f"{redact(self.cam.source)} stopped delivering frames")
            self._stop.wait(delay)
            delay = min(delay * 2, self.retry_max_s)

    def _fail(self, message: str) -> None:
        if self.error != message:
            log.warning("camera %s: %s; retrying", self.name, message)
        self.status, self.error = "error", message
