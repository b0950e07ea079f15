"""`python -m edge_agent preview`: what the board sees, live — the very pipeline `run`
uses (camera reader, detector, tracker, smoothing, classifier) with each face's box,
track, 7-class label, valence and confidence drawn, plus FPS and per-stage times.

In a window where a display exists; otherwise as an MJPEG page served on 127.0.0.1 only
(a field tech opens it through an SSH tunnel). Binding another address needs
`--expose`, and says what it exposes. Nothing is stored and nothing is sent to the
server: the preview has no credentials and no outbox.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from .annotate import draw
from .config import CameraSection, Config

log = logging.getLogger(__name__)
BOUNDARY = b"affectwatch-frame"
PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>Affectwatch preview</title>
<style>body{margin:0;background:#111;color:#ddd;font:14px sans-serif}img{max-width:100%;display:block;margin:auto}
p{text-align:center}</style></head><body><p>Affectwatch preview: local only, nothing is stored or sent.</p>
<img src="/stream" alt="live preview"></body></html>"""


class PreviewError(ValueError):
    """A problem the user can fix (a port in use, an address that needs --expose, a
    source that does not open), said in one line."""


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def exposure_warning(host: str, port: int) -> str:
    return (f"WARNING: the preview is served on {host}:{port}, not only on this board: anyone who can reach "
            f"that address sees the camera's live picture with every face in it. Use it on a trusted network "
            f"only, and stop the preview when done.")


class Latest:
    """The newest annotated JPEG, for any number of viewers."""

    def __init__(self):
        self.jpeg: bytes | None = None
        self.seq = 0
        self.cond = threading.Condition()

    def put(self, jpeg: bytes) -> None:
        with self.cond:
            self.jpeg, self.seq = jpeg, self.seq + 1
            self.cond.notify_all()

    def next(self, after: int, timeout: float = 5.0) -> tuple[int, bytes | None]:
        with self.cond:
            self.cond.wait_for(lambda: self.seq > after, timeout)
            return self.seq, self.jpeg


def host_allowed(header: str) -> bool:
    """A request's Host is an IP address or this board's own name. A page elsewhere in the
    viewer's browser could otherwise reach the camera through DNS rebinding (a name it
    controls, re-pointed at this address), which only works with a name."""
    name = header.rsplit(":", 1)[0] if header.count(":") == 1 else header
    name = name.strip("[]").rstrip(".").lower()
    if not name:
        return False
    try:
        ipaddress.ip_address(name.split("]")[0])
        return True
    except ValueError:
        return name in {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}


def make_server(host: str, port: int, latest: Latest, stop: threading.Event) -> ThreadingHTTPServer:
    """The MJPEG server (`/` a page, `/stream` multipart JPEG). Raises PreviewError when
    the port is taken."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # viewers are not worth a log line each
            pass

        def do_GET(self):  # noqa: N802 - http.server's name
            # Only the addresses it is served on: a web page the viewer has open elsewhere
            # cannot reach the camera through DNS rebinding.
            if not host_allowed(self.headers.get("Host", "")):
                self.send_error(403, "unexpected Host header")
                return
            if self.path == "/":
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)
                return
            if self.path != "/stream":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seq = 0
            try:
                while not stop.is_set():
                    seq, jpeg = latest.next(seq)
                    if jpeg is None:
                        continue
                    self.wfile.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                return

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise PreviewError(f"cannot serve the preview on {host}:{port}: {exc.strerror or exc} "
                           f"(is another preview running? choose another with --port)") from None
    server.daemon_threads = True
    return server


def overlay(image: np.ndarray, pipeline, fps: float) -> np.ndarray:
    """The annotated frame: faces (as `annotate` draws them), FPS and per-stage times."""
    out = draw(image, pipeline.seen, pipeline.models.current.labels, pipeline.models.current.group, fps)
    frames = max(pipeline.frame_index, 1)
    stages = "  ".join(f"{k} {1000 * v / frames:.1f} ms" for k, v in pipeline.timer.totals.items())
    cv2.putText(out, stages, (8, out.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def has_display() -> bool:
    """A window is possible: a display, and an OpenCV built with a GUI backend."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    info = cv2.getBuildInformation()
    gui = info.split("GUI:", 1)[1].split("\n", 2)[1] if "GUI:" in info else ""
    return "NONE" not in gui.upper()


def run_preview(cfg: Config, clf, cam: CameraSection, host: str = "127.0.0.1", port: int = 8090,
                window: bool | None = None, stop: threading.Event | None = None, ready=None) -> None:
    """Shows `cam` through the pipeline until Ctrl-C (or `stop`). Raises PreviewError."""
    from .pipeline import FramePipeline, ModelHolder
    from .sources import CameraReader, RateMeter

    stop = stop or threading.Event()
    window = has_display() if window is None else window
    server = None
    latest = Latest()
    if not window:
        server = make_server(host, port, latest, stop)
        threading.Thread(target=server.serve_forever, name="preview-http", daemon=True).start()
    reader = CameraReader(cam).start()
    pipeline = FramePipeline(cam.name or "preview", cfg, ModelHolder(clf), lambda events: None)
    rate = RateMeter()
    seq = 0
    try:
        if ready is not None:
            ready(server)
        while not stop.is_set():
            frame = reader.wait_frame(seq, timeout=1.0)
            if frame is None:
                if reader.status == "error" and reader.frames_read == 0:
                    raise PreviewError(f"cannot open camera {cam.name or cam.source}: {reader.error}")
                if reader.finished:
                    break
                continue
            seq = frame.seq
            pipeline.process(frame.image, frame.ts)
            rate.tick()
            shown = overlay(frame.image, pipeline, rate.rate())
            if window:
                cv2.imshow("Affectwatch preview (q to quit)", shown)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
            else:
                ok, jpeg = cv2.imencode(".jpg", shown, [cv2.IMWRITE_JPEG_QUALITY, 80])
                if ok:
                    latest.put(jpeg.tobytes())
    finally:
        reader.stop()
        stop.set()
        if server is not None:
            server.shutdown()
            server.server_close()
        if window:
            cv2.destroyAllWindows()
        time.sleep(0)
