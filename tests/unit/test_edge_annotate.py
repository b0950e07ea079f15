"""`python -m edge_agent annotate`: an annotated copy of a recorded video and a per-face
timeline through the agent's own pipeline; folders; one clear message per bad input; and
the YuNet path of annotate and classify where the YuNet model file is present."""
import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.labels import FER2013_CLASSES, VALENCE_CLASSES, valence_of
from tests.support import shared_model
from tests.unit.test_edge_cli import run
from tests.unit.test_edge_helpers import scene_video

YUNET = "yunet/face_detection_yunet.onnx"


def timeline(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def frames_of(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def check_annotation(res, video, out, table, n_frames, n_faces):
    assert res.returncode == 0, res.stderr
    assert frames_of(out) == n_frames  # every frame, none skipped
    rows = timeline(table)
    assert list(rows[0]) == ["time_s", "frame", "track", "x", "y", "w", "h", "label", "valence", "confidence"]
    assert len({r["track"] for r in rows}) == n_faces
    for r in rows:  # one valence rule: the label lies in the valence's group
        assert r["label"] in FER2013_CLASSES and r["valence"] == valence_of(r["label"])
        assert 0 < float(r["confidence"]) <= 1 and r["valence"] in VALENCE_CLASSES
        assert float(r["time_s"]) == pytest.approx(int(r["frame"]) / 30.0, abs=1e-3)
    assert f"{n_frames} frames" in res.stderr and f"{n_faces} tracks" in res.stderr and "valence" in res.stderr


def test_a_video_gets_an_annotated_copy_and_a_timeline(tmp_path):
    video = scene_video(tmp_path / "scene.mp4", n_faces=2, frames=60)
    out, table = tmp_path / "out" / "annotated.mp4", tmp_path / "out" / "timeline.csv"
    res = run("annotate", str(video), "--out", str(out), "--csv", str(table), "--no-progress")
    check_annotation(res, video, out, table, 60, 2)
    # the drawing is on the copy: annotated frames differ from the source where faces are
    src, ann = cv2.VideoCapture(str(video)), cv2.VideoCapture(str(out))
    for _ in range(30):
        a, b = src.read()[1], ann.read()[1]
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1


def test_a_folder_of_videos_gives_one_copy_and_timeline_each(tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(2):
        scene_video(tmp_path / "in" / f"clip{i}.mp4", n_faces=1 + i, frames=30, seed=i)
    (tmp_path / "in" / "notes.txt").write_text("not a video")
    res = run("annotate", str(tmp_path / "in"), "--out", str(tmp_path / "ann"), "--csv", str(tmp_path / "csv"),
              "--no-progress")
    assert res.returncode == 0, res.stderr
    for i in range(2):
        assert frames_of(tmp_path / "ann" / f"clip{i}.annotated.mp4") == 30
        assert len({r["track"] for r in timeline(tmp_path / "csv" / f"clip{i}.csv")}) == 1 + i
    assert "2 videos: 60 frames" in res.stderr


@pytest.mark.parametrize("case", ["missing", "not a video", "unwritable", "no videos in folder", "output is input"])
def test_bad_input_is_one_clear_message(tmp_path, case):
    video = scene_video(tmp_path / "scene.mp4", n_faces=1, frames=10)
    args = {
        "missing": [str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o.mp4")],
        "not a video": [str(tmp_path / "fake.mp4"), "--out", str(tmp_path / "o.mp4")],
        "unwritable": [str(video), "--out", "/proc/affectwatch/o.mp4"],
        "no videos in folder": [str(tmp_path / "empty"), "--out", str(tmp_path / "o")],
        "output is input": [str(video), "--out", str(video)],
    }[case]
    (tmp_path / "fake.mp4").write_text("this is text")
    (tmp_path / "empty").mkdir()
    res = run("annotate", *args, "--no-progress")
    expected = {"missing": "not found", "not a video": "cannot open", "unwritable": "cannot create",
                "no videos in folder": "holds no video", "output is input": "is an input"}[case]
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last, res.stderr


def test_a_video_without_faces_says_so(tmp_path):
    blank = tmp_path / "blank.mp4"
    writer = cv2.VideoWriter(str(blank), cv2.VideoWriter_fourcc(*"mp4v"), 30, (320, 240))
    for i in range(15):
        writer.write(np.full((240, 320, 3), 40 + i, np.uint8))
    writer.release()
    res = run("annotate", str(blank), "--out", str(tmp_path / "o.mp4"), "--csv", str(tmp_path / "t.csv"),
              "--no-progress")
    assert res.returncode == 0 and "no face found" in res.stderr, res.stderr
    assert timeline(tmp_path / "t.csv") == [] and frames_of(tmp_path / "o.mp4") == 15


@pytest.mark.shared_model(YUNET)
def test_annotate_and_classify_with_yunet(tmp_path):
    model = str(shared_model(YUNET))
    video = scene_video(tmp_path / "scene.mp4", n_faces=3, frames=45)
    out, table = tmp_path / "a.mp4", tmp_path / "t.csv"
    res = run("annotate", str(video), "--out", str(out), "--csv", str(table), "--yunet", model, "--no-progress")
    check_annotation(res, video, out, table, 45, 3)
    cap = cv2.VideoCapture(str(video))
    cv2.imwrite(str(tmp_path / "frame.png"), cap.read()[1])
    res = run("classify", str(tmp_path / "frame.png"), "--yunet", model)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(res.stdout.splitlines()))
    assert len(rows) == 3 and all(valence_of(r["label"]) == r["valence"] for r in rows)
