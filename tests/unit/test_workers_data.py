"""Importers: FER2013 (zip, folder, csv), folder-per-class sets, manifests, the cache."""
import csv
import zipfile

import cv2
import numpy as np
import pytest

from edge_agent.labels import FER2013_CLASSES, VALENCE_CLASSES
from edge_agent.preprocess import PreprocessSpec, to_model_pixels
from workers.data import ImportError_, load_dataset
from workers.data.fer2013 import read_fer2013_csv, read_fer2013_folder, read_fer2013_zip
from workers.data.folders import read_class_folders
from workers.data.loader import detect_kind
from workers.data.manifest import read_manifest
from workers.data.synthetic import (
    write_class_folders,
    write_fer2013_csv,
    write_fer2013_folder,
    write_fer2013_zip,
    write_manifest,
)

from tests.support import dataset_path

FER_ZIP = dataset_path("fer2013/fer2013.zip")


def _check_fer(data, n_per_class):
    assert data.images.dtype == np.uint8 and data.images.shape[1:] == (48, 48, 1)
    assert data.classes == FER2013_CLASSES
    for split in ("Training", "PublicTest", "PrivateTest"):
        part = data.where_split(split)
        assert part.class_counts().tolist() == [n_per_class] * 7
    assert data.report.read == len(data) == 3 * 7 * n_per_class


def test_fer2013_zip_folder_and_csv_read_the_same_images(tmp_path):
    z = read_fer2013_zip(write_fer2013_zip(tmp_path / "fer.zip", 3))
    f = read_fer2013_folder(write_fer2013_folder(tmp_path / "tree", 3))
    c = read_fer2013_csv(write_fer2013_csv(tmp_path / "fer2013.csv", 3))
    for data in (z, f, c):
        _check_fer(data, 3)
    # Same pixels whatever the container (PNG is lossless); order by split then class.
    def key(d):
        order = np.lexsort((d.labels, d.split))
        return d.images[order], d.labels[order]
    for other in (f, c):
        assert np.array_equal(key(z)[1], key(other)[1])
        assert np.array_equal(key(z)[0], key(other)[0])


def test_kaggle_folder_names_map_onto_fer2013_order(tmp_path):
    data = read_fer2013_zip(write_fer2013_zip(tmp_path / "fer.zip", 1))
    # Folder "neutral" must become class 6 and "sad" class 4 (FER2013 order), not folder order.
    happy = data.where_split("Training")
    assert sorted(happy.labels.tolist()) == list(range(7))
    assert FER2013_CLASSES.index("neutral") == 6


def test_unknown_class_folder_is_a_clear_error_or_skipped_and_counted(tmp_path):
    _, ok = cv2.imencode(".png", np.full((48, 48), 128, np.uint8))
    path = write_fer2013_zip(tmp_path / "fer.zip", 2, extra={"train/contempt/Training_9.png": ok.tobytes()})
    with pytest.raises(ImportError_, match=r"unknown class folder\(s\) \['contempt'\]"):
        read_fer2013_zip(path)
    data = read_fer2013_zip(path, strict_labels=False)
    assert data.report.skipped["unknown label"] == 1
    assert len(data) == 3 * 7 * 2


def test_corrupt_images_are_skipped_with_a_count(tmp_path):
    path = write_fer2013_zip(tmp_path / "fer.zip", 2, extra={
        "train/happy/Training_bad1.jpg": b"not a jpeg at all",
        "test/sad/PublicTest_bad2.jpg": b"",
    })
    data = read_fer2013_zip(path)
    assert data.report.skipped["corrupt image"] == 2
    assert len(data) == 3 * 7 * 2
    assert "2 corrupt image" in data.report.summary() and "_bad" in data.report.summary()


def test_not_a_zip_and_wrong_layout_are_errors(tmp_path):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ImportError_, match="not a readable zip"):
        read_fer2013_zip(bad)
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(flat, "w") as z:
        z.writestr("happy/1.png", b"x")
    with pytest.raises(ImportError_, match="no images in the train/<class>/"):
        read_fer2013_zip(flat)


def test_fer2013_csv_rejects_bad_rows(tmp_path):
    good = {"emotion": 3, "pixels": " ".join(["100"] * 2304), "Usage": "Training"}
    short = {"emotion": 3, "pixels": "1 2 3", "Usage": "Training"}
    text = {"emotion": 3, "pixels": "a b c d", "Usage": "Training"}
    data = read_fer2013_csv(write_fer2013_csv(tmp_path / "a.csv", 1, extra_rows=[good, short, text]))
    assert data.report.skipped["pixel count not a square image"] == 2
    assert len(data) == 3 * 7 + 1
    with pytest.raises(ImportError_, match=r"emotion '9' is not 0..6"):
        read_fer2013_csv(write_fer2013_csv(tmp_path / "b.csv", 1, extra_rows=[{**good, "emotion": 9}]))
    missing = tmp_path / "c.csv"
    missing.write_text("emotion,pixels\n3,1 2 3\n")
    with pytest.raises(ImportError_, match=r"missing column\(s\) \['Usage'\]"):
        read_fer2013_csv(missing)


def test_fer2013_csv_as_spreadsheet_tools_write_it(tmp_path):
    """Excel's "CSV UTF-8" (a byte-order mark), ';' separators, a row of 2,303 pixels
    and a row with an extra column: the good rows are read, each bad one is counted
    and named, and a cached re-read says the same."""
    good = ["3", " ".join(["100"] * 2304), "Training"]
    rows = [good] * 38 + [["3", " ".join(["100"] * 2303), "Training"], [*good, "surplus"]]
    for name, sep, bom in (("utf8bom.csv", ",", "\ufeff"), ("semicolon.csv", ";", "")):
        path = tmp_path / name
        path.write_text(bom + sep.join(["emotion", "pixels", "Usage"]) + "\n"
                        + "".join(sep.join(r) + "\n" for r in rows), encoding="utf-8")
        assert detect_kind(path) == "fer2013-csv"
        data = load_dataset(path, cache_dir=tmp_path / "cache")
        assert len(data) == 38
        assert data.report.skipped == {"pixel count not a square image": 1, "extra column(s)": 1}
        assert f"{name}:40 (2303 values)" in data.report.summary() and f"{name}:41" in data.report.summary()
        assert load_dataset(path, cache_dir=tmp_path / "cache").report.summary() == data.report.summary()


def test_os_and_tool_metadata_is_ignored_not_refused(tmp_path):
    root = write_class_folders(tmp_path / "ck", ["happy", "sad"], 2)
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "x.png").write_bytes(b"junk")
    (root / "__MACOSX").mkdir()
    (root / "happy" / ".DS_Store").write_bytes(b"\0\0")
    (root / "happy" / "._face.png").write_bytes(b"\0\5\26\7")
    data = read_class_folders(root)
    assert len(data) == 4 and data.report.total_skipped == 0
    tree = write_fer2013_folder(tmp_path / "tree", 1)
    (tree / "train" / "happy" / "._x.jpg").write_bytes(b"\0\5\26\7")
    assert read_fer2013_folder(tree).report.total_skipped == 0


def test_training_cli_answers_a_users_mistake_in_one_line(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "fer2013.csv"
    bad.write_text("emotion;pixel;Usage\n3;1 2;Training\n")
    for argv, message in (
        (["train", "--data", str(bad), "--out", str(tmp_path / "r")], "a CSV needs emotion,pixels,Usage"),
        (["train", "--data", str(tmp_path / "none.zip"), "--out", str(tmp_path / "r")], "no such file"),
        (["evaluate", "--data", str(bad), "--checkpoint", str(tmp_path / "none.pt")], "none.pt"),
    ):
        res = subprocess.run([sys.executable, "-m", "workers.training", *argv], capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.startswith("error: ") and message in res.stderr


def test_class_folders_resize_colour_and_map_labels(tmp_path):
    root = write_class_folders(tmp_path / "ck", ["anger", "happiness", "surprise", "contempt"], 3, size=64)
    with pytest.raises(ImportError_, match="contempt"):
        read_class_folders(root)
    skipped = read_class_folders(root, strict_labels=False)
    assert skipped.report.skipped["unknown label"] == 3 and len(skipped) == 9
    mapped = read_class_folders(root, label_map={"contempt": "disgust"})
    assert len(mapped) == 12 and mapped.images.shape[1:] == (48, 48, 1)
    assert sorted(set(mapped.labels.tolist())) == sorted(
        FER2013_CLASSES.index(c) for c in ("angry", "happy", "surprise", "disgust"))
    rgb = read_class_folders(root, spec=PreprocessSpec(color="rgb", mean=(0.5,) * 3, std=(0.5,) * 3),
                             label_map={"contempt": "disgust"})
    assert rgb.images.shape[1:] == (48, 48, 3)


def test_class_folders_with_split_folders(tmp_path):
    write_class_folders(tmp_path / "set" / "train", ["happy", "sad"], 2)
    write_class_folders(tmp_path / "set" / "val", ["happy", "sad"], 1)
    data = read_class_folders(tmp_path / "set")
    assert sorted(set(data.split)) == ["train", "val"]
    assert len(data.where_split("val")) == 2


def test_manifest_reads_worker_flags_and_skips_missing_files(tmp_path):
    path = write_manifest(tmp_path / "itch", n_per_class=4)
    rows = list(csv.DictReader(open(path)))
    (path.parent / rows[0]["path"]).unlink()  # a missing file
    (path.parent / rows[1]["path"]).write_bytes(b"garbage")  # a corrupt one
    data = read_manifest(path)
    assert data.classes == VALENCE_CLASSES
    assert len(data) == 10
    assert data.report.skipped == {"missing file": 1, "corrupt image": 1}
    assert data.is_worker.dtype == bool and data.is_worker.any() and not data.is_worker.all()
    assert set(data.subject_id) <= {f"S{i:02d}" for i in range(6)}


def test_manifest_errors_name_the_row(tmp_path):
    path = write_manifest(tmp_path / "itch", n_per_class=1)
    text = path.read_text().splitlines()
    path.write_text("\n".join(text + ["images/0000.png,furious,1,S01"]) + "\n")
    with pytest.raises(ImportError_, match=r"manifest.csv:5: unknown label 'furious'"):
        read_manifest(path)
    assert len(read_manifest(path, strict_labels=False)) == 3
    path.write_text("\n".join(text + ["images/0000.png,positive,maybe,S01"]) + "\n")
    with pytest.raises(ImportError_, match="is_worker must be"):
        read_manifest(path)
    path.write_text("path,label\nimages/0000.png,positive\n")
    with pytest.raises(ImportError_, match="missing column"):
        read_manifest(path)


def test_detect_kind_and_cache_round_trip(tmp_path):
    z = write_fer2013_zip(tmp_path / "fer.zip", 1)
    assert detect_kind(z) == "fer2013-zip"
    assert detect_kind(write_fer2013_csv(tmp_path / "fer2013.csv", 1)) == "fer2013-csv"
    assert detect_kind(write_manifest(tmp_path / "m", n_per_class=1)) == "manifest"
    assert detect_kind(write_fer2013_folder(tmp_path / "tree", 1)) == "fer2013-folder"
    assert detect_kind(write_class_folders(tmp_path / "ck", ["happy"], 1)) == "folders"
    with pytest.raises(ImportError_, match="no such file"):
        detect_kind(tmp_path / "nope")
    cache = tmp_path / "cache"
    first = load_dataset(z, cache_dir=cache)
    [entry] = cache.glob("*.npz")
    stamp = entry.stat().st_mtime_ns
    second = load_dataset(z, cache_dir=cache)
    assert entry.stat().st_mtime_ns == stamp  # read from the cache, not imported again ...
    assert second.report.summary() == first.report.summary()  # ... and still says what was skipped
    assert np.array_equal(first.images, second.images) and np.array_equal(first.split, second.split)
    load_dataset(z, cache_dir=cache, spec=PreprocessSpec(size=(32, 32)))
    assert len(list(cache.glob("*.npz"))) == 2  # another spec, another cache entry


@pytest.mark.dataset("fer2013/fer2013.zip")
def test_real_fer2013_images_decode_to_model_pixels():
    from workers.data.decode import decode_image

    spec = PreprocessSpec()
    with zipfile.ZipFile(FER_ZIP) as z:
        names = [n for n in z.namelist() if n.endswith(".jpg")][:5]
        for n in names:
            raw = cv2.imdecode(np.frombuffer(z.read(n), np.uint8), cv2.IMREAD_GRAYSCALE)
            img = decode_image(z.read(n), spec)
            assert img.shape == (48, 48, 1)
            assert np.array_equal(img, to_model_pixels(raw, spec))
