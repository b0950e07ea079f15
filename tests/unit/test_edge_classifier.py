"""Model files: metadata read and checked, bad files refused with the reason; batched
classification; the `classify` command."""
import csv
import io
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge_agent.classifier import ModelError, crop_face, load_model
from edge_agent.labels import VALENCE_CLASSES, valence_of
from edge_agent.preprocess import PreprocessSpec, preprocess
from tests.unit.test_edge_helpers import FER7, build_tiny_model, sample_faces


@pytest.fixture
def model(tmp_path):
    return build_tiny_model(tmp_path / "tiny.onnx")


def test_batch_matches_one_by_one_and_the_shared_preprocessing(model):
    clf = load_model(model)
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (60 + 10 * i, 50 + 7 * i, 3), dtype=np.uint8) for i in range(5)]
    batch = clf.classify(crops)
    assert batch.shape == (5, 7) and np.allclose(batch.sum(axis=1), 1, atol=1e-5)
    singles = np.concatenate([clf.classify([c]) for c in crops])
    assert np.allclose(batch, singles, atol=1e-5)
    # The same pixels as training's preprocessing (edge_agent.preprocess) would produce.
    logits = clf.backend.run(preprocess(crops, clf.spec))
    e = np.exp(logits - logits.max(1, keepdims=True))
    assert np.allclose(batch, e / e.sum(1, keepdims=True), atol=1e-5)


def test_valence_groups_follow_the_default_map(model):
    clf = load_model(model)
    probs = np.eye(7, dtype=np.float32)
    groups = [VALENCE_CLASSES[i] for i in clf.decide(probs)[2]]
    assert dict(zip(FER7, groups)) == {"angry": "negative", "disgust": "negative", "fear": "negative",
                                       "happy": "positive", "sad": "negative", "surprise": "positive",
                                       "neutral": "neutral"}


def test_valence_map_is_configurable(model):
    clf = load_model(model, valence_map={**dict.fromkeys(FER7, "neutral"), "surprise": "negative"})
    assert VALENCE_CLASSES[int(clf.decide(np.eye(7, dtype=np.float32))[2][5])] == "negative"


def test_label_and_valence_never_disagree_under_the_one_rule(model):
    """The case that once printed `happy,negative`: happy is the top class, but the four
    negative classes together hold more probability. The valence is decided first
    (negative, 0.45), the label is its likeliest class (angry, not happy)."""
    clf = load_model(model)
    p = np.array([[0.15, 0.1, 0.1, 0.3, 0.1, 0.1, 0.15]], dtype=np.float32)  # FER7 order
    k, kp, v, vp = clf.decide(p)
    assert clf.labels[k[0]] == "angry" and VALENCE_CLASSES[v[0]] == "negative"
    assert kp[0] == pytest.approx(0.15) and vp[0] == pytest.approx(0.45)  # angry + disgust + fear + sad
    # one class holding most of the mass: plain argmax
    k, kp, v, vp = clf.decide(np.array([[0.05, 0.05, 0.05, 0.6, 0.05, 0.1, 0.1]], dtype=np.float32))
    assert clf.labels[k[0]] == "happy" and VALENCE_CLASSES[v[0]] == "positive" and vp[0] == pytest.approx(0.7)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(7, 0.3), size=2000).astype(np.float32)
    k, _, v, _ = clf.decide(probs)
    assert [valence_of(clf.labels[i]) for i in k] == [VALENCE_CLASSES[i] for i in v]


def test_rgb_three_class_model(tmp_path):
    spec = {"size": [64, 64], "color": "rgb", "scale": 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    clf = load_model(build_tiny_model(tmp_path / "rgb.onnx", labels=VALENCE_CLASSES, preprocess=spec))
    assert clf.spec == PreprocessSpec.from_dict(spec)
    out = clf.classify([np.zeros((80, 80, 3), np.uint8)], clahe=2.0)
    assert out.shape == (1, 3)


def test_clahe_changes_the_input_but_not_the_shape(model):
    clf = load_model(model)
    face = cv2.resize(sample_faces(1)[0], (120, 120))
    face = (face // 3 + 60).astype(np.uint8)  # a washed-out face
    plain, eq = clf.classify([face]), clf.classify([face], clahe=2.0)
    assert plain.shape == eq.shape and not np.allclose(plain, eq)


@pytest.mark.parametrize("kwargs, reason", [
    ({"metadata": {"affectwatch.preprocess": json.dumps({"size": [48, 48]})}}, "no affectwatch.labels"),
    ({"metadata": {"affectwatch.labels": json.dumps(FER7)}}, "no affectwatch.preprocess"),
    ({"metadata": {"affectwatch.labels": "angry,happy", "affectwatch.preprocess": "{}"}}, "not JSON"),
    ({"preprocess": {"size": [48, 48], "color": "purple", "mean": [0.5], "std": [0.5]}}, "preprocess is invalid"),
    ({"channels": 3}, "3 channel(s)"),
    ({"out_classes": 5}, "outputs 5 classes"),
    ({"labels": ("angry", "bored")}, "no valence"),
])
def test_mismatched_models_are_refused_with_the_reason(tmp_path, kwargs, reason):
    path = build_tiny_model(tmp_path / "bad.onnx", **kwargs)
    with pytest.raises(ModelError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        load_model(path)


def test_corrupt_file_is_refused(tmp_path, model):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(model.read_bytes()[: len(model.read_bytes()) // 2])
    with pytest.raises(ModelError, match="cannot load"):
        load_model(bad)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.onnx")


def test_tensorrt_backend_asked_for_without_tensorrt_is_a_clear_error(model):
    with pytest.raises(ModelError, match="tensorrt"):
        load_model(model, backend="tensorrt")


def test_crop_with_margin_is_clipped_to_the_frame():
    frame = np.zeros((100, 200, 3), np.uint8)
    assert crop_face(frame, (10, 10, 50, 50), 0.2).shape == (70, 70, 3)
    assert crop_face(frame, (180, 80, 40, 40), 0.1).shape == (24, 24, 3)  # 176..200, 76..100


def test_classify_command_writes_one_row_per_face(tmp_path, model):
    from edge_agent.synthetic import Scene

    folder = tmp_path / "images"
    folder.mkdir()
    scene = Scene(sample_faces(2), seed=3)
    cv2.imwrite(str(folder / "two.png"), scene.frame(0))
    cv2.imwrite(str(folder / "none.png"), np.full((240, 320, 3), 127, np.uint8))
    out = tmp_path / "faces.csv"
    res = subprocess.run([sys.executable, "-m", "edge_agent", "classify", str(folder), "--model", str(model),
                          "--out", str(out), "--annotate", str(tmp_path / "annotated")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rows = [r for r in csv.DictReader(io.StringIO(out.read_text())) if r["status"] == "faces"]
    assert [r["face"] for r in rows] == ["0", "1"]
    assert all(r["file"].endswith("two.png") and r["label"] in FER7 and r["valence"] in VALENCE_CLASSES
               and 0 < float(r["confidence"]) <= float(r["valence_confidence"]) <= 1 for r in rows)
    assert all(valence_of(r["label"]) == r["valence"] for r in rows)  # every row the command writes
    truth = scene.boxes(0)
    for r in rows:
        box = np.array([float(r[k]) for k in "xywh"])
        assert min(np.abs(box[:2] - np.array(t[:2])).max() for t in truth) < 30
    assert (tmp_path / "annotated" / "two.annotated.png").exists()


def test_classify_accounts_for_every_file(tmp_path, model):
    """A face, no face, a truncated JPEG, an unreadable file, a GIF and a missing path:
    each gets a row with its status, and the summary counts them."""
    from edge_agent.synthetic import Scene

    folder = tmp_path / "in"
    folder.mkdir()
    frame = Scene(sample_faces(1), seed=3).frame(0)
    cv2.imwrite(str(folder / "face.png"), frame)
    cv2.imwrite(str(folder / "blank.png"), np.full((240, 320, 3), 127, np.uint8))
    jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
    (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "junk.png").write_bytes(b"not a png at all")
    (folder / "notes.txt").write_text("not an image")
    (folder / "tail.jpg").write_bytes(jpeg + b"\0" * 64)  # data after the end marker: still whole
    (folder / ".thumbnails").mkdir()
    (folder / ".thumbnails" / "t.png").write_bytes(b"\x89PNG junk")  # OS metadata: ignored
    gif = folder / "face.gif"
    from PIL import Image

    Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)).save(gif)
    res = subprocess.run([sys.executable, "-m", "edge_agent", "classify", str(folder), str(tmp_path / "missing.jpg"),
                          "--model", str(model)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    status = {r["file"].rsplit("/", 1)[1]: r["status"] for r in rows}
    assert status["face.png"] == "faces" and status["face.gif"] == "faces" and status["blank.png"] == "no face"
    assert status["cut.jpg"].startswith("unreadable: truncated JPEG") and status["tail.jpg"] == "faces"
    assert status["junk.png"].startswith("unreadable") and status["missing.jpg"].startswith("unreadable")
    assert "notes.txt" not in status and "t.png" not in status
    assert "7 image file(s): 3 with faces (3 face(s)), 1 with no face, 3 unreadable; 2 other file(s)" in res.stderr


@pytest.mark.parametrize("text", ["=1+2", "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", '=HYPERLINK("x")'])
def test_spreadsheet_formulas_become_text(text):
    from edge_agent.spreadsheet import safe_cell

    assert safe_cell(text) == "'" + text
    assert safe_cell("neutral") == "neutral" and safe_cell(-3) == -3 and safe_cell(0.5) == 0.5 and safe_cell(None) is None
