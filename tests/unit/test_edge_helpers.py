"""Helpers shared by the edge agent's tests (a tiny self-describing model, faces from a
real photograph, a synthetic scene, a small HTTP peer), and the tests that they
themselves work."""
from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

FER7 = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
GRAY48 = {"size": [48, 48], "color": "gray", "scale": 255.0, "mean": [0.5], "std": [0.5]}


def build_tiny_model(path, labels=FER7, preprocess=None, version="tiny@1", channels=None, out_classes=None,
                     seed=0, arch="tiny-test", metadata=None):
    """A small CNN with random weights and the metadata of DESIGN.md ("A model file is
    self-describing"); `channels` / `out_classes` let a test make a mismatched one."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    preprocess = preprocess or GRAY48
    c = channels or len(preprocess["mean"])
    h, w = preprocess["size"]
    k = out_classes or len(labels)
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, c, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (16, 8, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(0, 0.5, (16, k)).astype(np.float32), "w3"),
             numpy_helper.from_array(np.zeros(k, np.float32), "b3")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, h, w])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", k])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"affectwatch.labels": json.dumps(list(labels)), "affectwatch.preprocess": json.dumps(preprocess),
            "affectwatch.arch": arch, "affectwatch.version": version, "affectwatch.dataset": "none"}
    if metadata is not None:
        meta = metadata
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))
    return Path(path)


_faces_cache: dict = {}


def sample_faces(n: int = 4, seed: int = 0) -> list[np.ndarray]:
    """`n` 48x48 gray faces (edge_agent.synthetic.photo_faces: variants of a public-domain
    photograph that scikit-image ships) that the Haar detector finds at 140 px."""
    key = (n, seed)
    if key not in _faces_cache:
        from edge_agent.synthetic import photo_faces

        _faces_cache[key] = photo_faces(n, seed=seed)
    return _faces_cache[key]


def scene_video(path, n_faces: int = 2, frames: int = 90, fps: float = 30.0, seed: int = 0) -> Path:
    from edge_agent.synthetic import Scene, write_video

    return write_video(path, Scene(sample_faces(n_faces, seed), seed=seed), frames, fps)


class Peer:
    """A small real HTTP server on 127.0.0.1 whose answers a test scripts: `handler(method,
    path, headers, body) -> (status, headers, body)`. Requests are recorded."""

    def __init__(self, handler):
        self.handler = handler
        self.requests: list[tuple[str, str, dict, bytes]] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                if headers.get("content-encoding") == "gzip":  # as the platform's BodyLimit does
                    body = gzip.decompress(body)
                peer.requests.append((self.command, self.path, headers, body))
                status, extra, out = peer.handler(self.command, self.path, headers, body)
                if isinstance(out, (dict, list)):
                    out = json.dumps(out).encode()
                    extra = {"Content-Type": "application/json", **(extra or {})}
                self.send_response(status)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class IngestPeer:
    """The ingest contract of docs/edge-protocol.md, kept in memory: idempotent per
    batch_id, per-event rejections; `mode` makes it fail the way a test needs."""

    def __init__(self):
        self.batches: dict[str, list] = {}
        self.events: list[dict] = []
        self.mode = "ok"  # ok | 500 | 429 | 401
        self.reject = lambda event: None  # event -> reason or None
        self.max_events = 10_000
        self.peer = Peer(self.handle)
        self.url = self.peer.url

    def handle(self, method, path, headers, body):
        if self.mode == "500":
            return 500, {}, {"detail": "server error"}
        if self.mode == "429":
            return 429, {"Retry-After": "0.2"}, {"detail": "slow down"}
        if self.mode == "401":
            return 401, {}, {"detail": "invalid token"}
        data = json.loads(body)
        if len(data["events"]) > self.max_events:
            return 400, {}, {"detail": "too many events"}
        bid = data["batch_id"]
        if bid in self.batches:
            return 200, {}, {"batch_id": bid, "accepted": len(self.batches[bid]), "rejected": [], "duplicate": True}
        rejected, kept = [], []
        for i, e in enumerate(data["events"]):
            reason = self.reject(e)
            if reason:
                rejected.append({"index": i, "reason": reason})
            else:
                kept.append(e)
        self.batches[bid] = kept
        self.events.extend(kept)
        return 200, {}, {"batch_id": bid, "accepted": len(kept), "rejected": rejected, "duplicate": False}

    def close(self):
        self.peer.close()


# The helpers' own tests ---------------------------------------------------------------------

def test_tiny_model_is_self_describing(tmp_path):
    from edge_agent.classifier import load_model

    clf = load_model(build_tiny_model(tmp_path / "m.onnx"))
    assert clf.labels == FER7 and clf.version == "tiny@1"
    assert clf.spec.size == (48, 48) and clf.spec.color == "gray"


def test_photo_faces_are_distinct_and_found_by_haar():
    import cv2

    from edge_agent.detectors import HaarDetector

    faces = sample_faces(4)
    assert len(faces) == 4 and all(f.shape == (48, 48) and f.dtype == np.uint8 for f in faces)
    assert all(np.abs(a.astype(int) - b).mean() > 3 for i, a in enumerate(faces) for b in faces[i + 1:])
    for f in faces:
        canvas = np.full((280, 280), 128, np.uint8)
        canvas[70:210, 70:210] = cv2.resize(f, (140, 140), interpolation=cv2.INTER_CUBIC)
        assert len(HaarDetector().detect(canvas)) == 1
