"""`python -m edge_agent preview`: the pipeline's live view as an MJPEG page on
127.0.0.1 (no display here), another address only with --expose and a warning, one clear
message for a port in use and a source that does not open; YuNet where its file is."""
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.support import free_port, shared_model
from tests.unit.test_edge_cli import ROOT, run
from tests.unit.test_edge_helpers import scene_video


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "edge_agent", "preview", "--no-window", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_jpeg(url, timeout=60):
    """The first frame of the MJPEG stream (bytes of one JPEG)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with requests.get(f"{url}/stream", stream=True, timeout=10) as res:
                assert res.headers["Content-Type"].startswith("multipart/x-mixed-replace")
                data = b""
                for chunk in res.iter_content(4096):
                    data += chunk
                    if b"\xff\xd9" in data[data.find(b"\xff\xd8"):]:
                        start_ = data.index(b"\xff\xd8")
                        return data[start_:data.index(b"\xff\xd9", start_) + 2]
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "the preview never served"
            time.sleep(0.3)


def stop(proc):
    proc.terminate()
    try:
        return proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def shows_faces(args, tmp_path):
    import cv2
    import numpy as np

    port = free_port()
    proc = start("--source", str(scene_video(tmp_path / "scene.mp4", 2, 60)), "--loop", "--port", str(port), *args)
    try:
        page = None
        deadline = time.monotonic() + 60
        while page is None:
            try:
                page = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.3)
        assert page.status_code == 200 and '<img src="/stream"' in page.text
        frame = cv2.imdecode(np.frombuffer(first_jpeg(f"http://127.0.0.1:{port}"), np.uint8), cv2.IMREAD_COLOR)
        assert frame.shape == (480, 640, 3)
        # boxes and captions are drawn: the valence colours (positive green, for the
        # smiling photo) cover a good many pixels, which the scene itself never has
        green = (np.abs(frame.astype(int) - (80, 190, 80)).max(axis=2) < 40).sum()
        assert green > 2000, green
        # a page elsewhere in the browser, through a name it controls, is refused
        rebound = requests.get(f"http://127.0.0.1:{port}/", headers={"Host": f"attacker.example:{port}"}, timeout=5)
        assert rebound.status_code == 403
    finally:
        _, err = stop(proc)
    assert "nothing is stored or sent" in err and "Traceback" not in err


def test_the_preview_page_streams_annotated_frames_on_loopback(tmp_path):
    shows_faces([], tmp_path)


def test_a_port_in_use_is_one_clear_message(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = run("preview", "--no-window", "--source", str(scene_video(tmp_path / "s.mp4", 1, 10)), "--port", str(port))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: cannot serve the preview on 127.0.0.1:")


def test_another_address_needs_expose_and_says_what_it_exposes(tmp_path):
    video = str(scene_video(tmp_path / "s.mp4", 1, 10))
    res = run("preview", "--no-window", "--source", video, "--host", "0.0.0.0")
    assert res.returncode == 2 and "refusing to serve the preview on 0.0.0.0" in res.stderr and "--expose" in res.stderr
    port = free_port()
    proc = start("--source", video, "--loop", "--host", "0.0.0.0", "--port", str(port), "--expose")
    try:
        assert len(first_jpeg(f"http://127.0.0.1:{port}")) > 1000
    finally:
        _, err = stop(proc)
    assert "WARNING: the preview is served on 0.0.0.0" in err and "every face" in err


def test_a_source_that_does_not_open_is_one_clear_message(tmp_path):
    res = run("preview", "--no-window", "--source", str(tmp_path / "no-such-camera.mp4"), "--port", str(free_port()))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "error: cannot open camera" in res.stderr.strip().splitlines()[-1]
    res = run("preview", "--no-window")
    assert res.returncode == 2 and "nothing to preview" in res.stderr


@pytest.mark.shared_model("yunet/face_detection_yunet.onnx")
def test_the_preview_with_yunet(tmp_path):
    shows_faces(["--yunet", str(shared_model("yunet/face_detection_yunet.onnx"))], tmp_path)
