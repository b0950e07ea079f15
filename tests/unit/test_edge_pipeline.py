"""The frame pipeline on a synthetic scene: faces found and followed, one event per track
per interval; smoothing; camera readers that fail or fall behind."""
import time

import numpy as np
import pytest

from edge_agent.classifier import load_model
from edge_agent.config import CameraSection, from_dict
from edge_agent.labels import VALENCE_CLASSES
from edge_agent.pipeline import CameraWorker, FramePipeline, ModelHolder
from edge_agent.smoothing import TrackSmoother
from edge_agent.sources import CameraReader, resolve_source
from edge_agent.synthetic import Scene
from edge_agent.tracking import FaceTracker, iou
from tests.unit.test_edge_helpers import build_tiny_model, sample_faces, scene_video


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    return load_model(build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx"))


@pytest.mark.parametrize("detect_every", [1, 6])
def test_faces_are_found_followed_and_emit_events(clf, detect_every):
    scene = Scene(sample_faces(3), seed=1)
    cfg = from_dict({"detector": {"detect_every": detect_every}})
    events = []
    pipe = FramePipeline("cam0", cfg, ModelHolder(clf), events.extend)
    worst = []
    face_tracks = set()
    for t in range(120):  # 4 s at 30 fps
        pipe.process(scene.frame(t), ts=1000.0 + t / 30)
        tracks = pipe.tracker.confirmed()
        if t >= 12:
            # Every face is covered, between detections too (Haar may add a brief false
            # detection now and then, which is why this is not `len(tracks) == 3`).
            truth = np.array(scene.boxes(t), dtype=np.float32)
            overlap = iou(truth, np.array([tr.box for tr in tracks], dtype=np.float32).reshape(-1, 4))
            worst.append(overlap.max(axis=1).min())
            face_tracks |= {pipe.track_name(tracks[j].id) for j in overlap.argmax(axis=1)}
    assert min(worst) > 0.5
    assert len(face_tracks) == 3  # ids stay stable: one track per face
    per_track = [sum(e["track"] == t for e in events) for t in face_tracks]
    assert all(3 <= n <= 4 for n in per_track), per_track  # one per second of capture time
    assert len(events) - sum(per_track) <= 1  # a false detection rarely lives long enough to emit
    e = events[0]
    assert set(e) == {"ts", "camera", "track", "label", "confidence"}
    assert e["camera"] == "cam0" and e["label"] in VALENCE_CLASSES and 0 <= e["confidence"] <= 1
    assert e["ts"].endswith("Z") and e["track"].startswith(pipe.run_id + "-")


def test_small_faces_are_skipped(clf):
    scene = Scene(sample_faces(2), face_size=60, seed=2)
    events = []
    pipe = FramePipeline("cam0", from_dict({"detector": {"min_face": 90, "detect_every": 1}}), ModelHolder(clf),
                         events.extend)
    for t in range(30):
        pipe.process(scene.frame(t), ts=t / 30)
    assert pipe.tracker.tracks == [] and events == []


def test_a_model_swap_is_picked_up_between_frames(clf, tmp_path):
    scene = Scene(sample_faces(1), seed=4)
    holder = ModelHolder(clf)
    pipe = FramePipeline("cam0", from_dict({}), holder, lambda ev: None)
    for t in range(10):
        pipe.process(scene.frame(t), ts=t / 30)
    other = load_model(build_tiny_model(tmp_path / "3.onnx", labels=VALENCE_CLASSES, version="three@2"))
    holder.current = other
    for t in range(10, 20):
        pipe.process(scene.frame(t), ts=t / 30)
    assert pipe.smoother.labels == VALENCE_CLASSES


def test_smoothing_and_rate_limit():
    group = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    sm = TrackSmoother(VALENCE_CLASSES, group, alpha=0.5, emit_interval_s=1.0, min_frames=2)
    neg, pos = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.1, 0.8])
    assert sm.update(1, neg, 0.0) is None  # min_frames
    first = sm.update(1, neg, 0.1)
    assert first.label == "negative" and first.confidence == pytest.approx(0.8)
    assert sm.update(1, pos, 0.5) is None  # rate limit
    # One positive frame does not flip a negative track…
    assert sm.update(1, neg, 1.2).label == "negative"
    # …a sustained change does.
    for k in range(5):
        em = sm.update(1, pos, 2.3 + k)
    assert em.label == "positive"
    sm.forget([1])
    assert sm.tracks == {}


def test_tracker_keeps_ids_and_ends_lost_tracks():
    tr = FaceTracker(min_hits=1, max_missed=1, follow=False)
    frame = np.zeros((100, 100), np.uint8)
    tr.update(np.array([[10, 10, 20, 20, 1]], np.float32), frame)
    tr.update(np.array([[12, 11, 20, 20, 1], [60, 60, 20, 20, 1]], np.float32), frame)
    assert [t.id for t in tr.tracks] == [1, 2]
    tr.update(np.zeros((0, 5), np.float32), frame)
    tr.update(np.zeros((0, 5), np.float32), frame)
    assert tr.tracks == [] and sorted(tr.ended) == [1, 2]


@pytest.mark.parametrize("source, kind", [("0", "index"), ("/dev/video2", "v4l2"), ("rtsp://10.1.1.1/s", "rtsp"),
                                          ("csi://1", "gstreamer"), ("videotestsrc ! appsink", "gstreamer"),
                                          ("clip.mp4", "file")])
def test_sources_are_recognised(source, kind):
    got, arg = resolve_source(CameraSection(name="c", source=source))
    assert got == kind
    if source == "csi://1":
        assert "nvarguscamerasrc sensor-id=1" in arg


def test_a_camera_that_cannot_be_opened_is_reported_and_retried(clf, tmp_path):
    bad = CameraReader(CameraSection(name="gone", source=str(tmp_path / "missing.mp4")), retry_max_s=0.2).start()
    good = CameraReader(CameraSection(name="ok", source=str(scene_video(tmp_path / "v.mp4", 1, 60)),
                                      realtime=True, loop=True)).start()
    workers = [CameraWorker(r, FramePipeline(r.name, from_dict({}), ModelHolder(clf), lambda ev: None))
               for r in (bad, good)]
    for w in workers:
        w._thread.start()
    try:
        time.sleep(2.0)
        health = {w.name: w.health() for w in workers}
        assert health["gone"]["status"] == "error" and "no such file" in health["gone"]["error"]
        assert health["ok"]["status"] == "ok" and health["ok"]["fps"] > 10
    finally:
        for w in workers:
            w.stop()


def test_a_slow_pipeline_gets_the_newest_frame_and_drops_stale_ones(tmp_path):
    video = scene_video(tmp_path / "v.mp4", 1, 60)
    reader = CameraReader(CameraSection(name="c", source=str(video), realtime=True)).start()
    try:
        seen = []
        seq = 0
        while len(seen) < 8:
            frame = reader.wait_frame(seq, timeout=2)
            if frame is None:
                break
            seq = frame.seq
            seen.append(seq)
            time.sleep(0.1)  # a pipeline at 10 fps behind a 30 fps camera
        assert all(b - a >= 2 for a, b in zip(seen[1:], seen[2:]))  # skipped ahead, not queued
        assert reader.frames_dropped > 10
    finally:
        reader.stop()


def test_a_file_played_losslessly_yields_every_frame(tmp_path):
    video = scene_video(tmp_path / "v.mp4", 1, 40)
    reader = CameraReader(CameraSection(name="c", source=str(video), realtime=False)).start()
    seqs, seq = [], 0
    while True:
        frame = reader.wait_frame(seq, timeout=2)
        if frame is None:
            break
        seq = frame.seq
        seqs.append(seq)
    assert seqs == list(range(1, 41)) and reader.frames_dropped == 0 and reader.status == "ended"


def test_detector_choice_and_a_missing_yunet_model(tmp_path):
    from edge_agent.config import DetectorSection
    from edge_agent.detectors import HaarDetector, make_detector

    assert isinstance(make_detector(DetectorSection()), HaarDetector)
    with pytest.raises(OSError, match="YuNet model .* not found"):
        make_detector(DetectorSection(model=str(tmp_path / "yunet.onnx")))
    assert isinstance(make_detector(DetectorSection(kind="haar", model=str(tmp_path / "yunet.onnx"))), HaarDetector)


def test_haar_finds_the_scene_faces_at_their_places():
    from edge_agent.detectors import HaarDetector

    scene = Scene(sample_faces(4), seed=0)
    dets = HaarDetector().detect(scene.frame(0))
    overlap = iou(np.array(scene.boxes(0), np.float32), dets[:, :4])
    assert (overlap.max(axis=1) > 0.5).all()


def test_camera_passwords_never_reach_logs_or_heartbeats():
    from edge_agent.sources import redact

    assert redact("cannot open rtsp://admin:s3cret@10.0.0.5:554/s1") == "cannot open rtsp://admin:***@10.0.0.5:554/s1"
    assert redact("rtsp://10.0.0.5/s1") == "rtsp://10.0.0.5/s1"


def test_a_camera_that_stops_delivering_is_reported(clf):
    reader = CameraReader(CameraSection(name="c", source="rtsp://10.0.0.9/s"))
    worker = CameraWorker(reader, FramePipeline("c", from_dict({}), ModelHolder(clf), lambda ev: None))
    reader.status, reader.last_frame_at = "ok", time.monotonic() - 25
    health = worker.health()
    assert health["status"] == "error" and health["error"] == "no frame for 25 s"


def test_an_offline_agent_runs_several_cameras_into_its_outbox(tmp_path):
    import json
    import sqlite3

    from edge_agent.agent import Agent

    video = scene_video(tmp_path / "v.mp4", 2, 75)
    cfg = from_dict({"agent": {"state_dir": str(tmp_path / "state")},
                     "model": {"path": str(build_tiny_model(tmp_path / "m.onnx"))},
                     "smoothing": {"emit_interval_s": 0.5},
                     "cameras": [{"name": "a", "source": str(video)}, {"name": "b", "source": str(video)}]})
    agent = Agent(cfg, None)
    agent.run_forever()  # returns when both files have played
    db = sqlite3.connect(tmp_path / "state" / "outbox.sqlite3")
    events = [json.loads(b) for (b,) in db.execute("SELECT body FROM events")]
    assert {e["camera"] for e in events} == {"a", "b"}
    assert len({(e["camera"], e["track"]) for e in events}) >= 4


def test_an_aligned_crop_has_its_eyes_level():
    """crop_face with the eye line's roll (the YuNet landmark formula) rotates the crop so
    two points on that line end up on one row; roll 0 is the plain crop."""
    import math

    import cv2

    from edge_agent.classifier import crop_face

    img = np.zeros((300, 300, 3), np.uint8)
    cx, cy, half, tilt = 150.0, 150.0, 40.0, 20.0
    dx, dy = half * math.cos(math.radians(tilt)), half * math.sin(math.radians(tilt))
    left, right = (round(cx - dx), round(cy - dy)), (round(cx + dx), round(cy + dy))
    cv2.circle(img, left, 4, (255, 255, 255), -1)
    cv2.circle(img, right, 4, (255, 255, 255), -1)
    roll = math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))  # as detectors.YuNetDetector
    box = (cx - 60, cy - 60, 120, 120)
    crop = crop_face(img, box, 0.0, roll)
    ys, xs = np.nonzero(crop[..., 0] > 128)
    left_half, right_half = ys[xs < crop.shape[1] / 2], ys[xs >= crop.shape[1] / 2]
    assert abs(left_half.mean() - right_half.mean()) < 1.5  # level
    assert crop_face(img, box, 0.0, 1.0).shape == crop_face(img, box, 0.0).shape == (120, 120, 3)
