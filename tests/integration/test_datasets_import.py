"""Importing a zip of consented face images: all or nothing, with a reason per file."""
import io
import zipfile

import cv2
import numpy as np
import pytest
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from apps.accounts.models import Role
from apps.datasets.models import Dataset, DatasetImport, Sample, Subject
from tests.research_data import itch_zip

pytestmark = pytest.mark.django_db


@pytest.fixture
def lab(tenant, make_user):
    researcher = make_user(tenant.org, Role.RESEARCHER)
    api = APIClient()
    api.force_login(researcher)
    ds = Dataset.objects.create(organisation=tenant.org, name="itch", created_by=researcher)
    yield api, ds, researcher
    for s in Sample.objects.filter(dataset=ds):
        default_storage.delete(s.image.name)


def upload(api, ds, data, name="set.zip"):
    f = io.BytesIO(data)
    f.name = name
    return api.post(f"/api/v1/datasets/{ds.id}/imports/", {"file": f}, format="multipart")


def png(img):
    return cv2.imencode(".png", img)[1].tobytes()


def test_a_consented_zip_is_imported_with_subjects_and_gallery(lab):
    api, ds, researcher = lab
    res = upload(api, ds, itch_zip(n=30, subjects=6, workers=3))
    assert res.status_code == 201, res.json()
    assert res.json()["accepted"] == 30
    assert ds.samples.count() == 30
    assert ds.subjects.count() == 6
    s1 = ds.subjects.get(code="S01")
    assert s1.is_worker and s1.has_consent and s1.consent_recorded_by == researcher
    assert s1.consent_scope == "face images for model training"
    # gallery filters
    negatives = api.get(f"/api/v1/samples/?dataset={ds.id}&label=negative").json()
    assert negatives["count"] == 10 and {r["label"] for r in negatives["results"]} == {"negative"}
    workers = api.get(f"/api/v1/samples/?dataset={ds.id}&subject__is_worker=true").json()
    assert workers["count"] == 15 and all(r["is_worker"] for r in workers["results"])
    img = api.get(negatives["results"][0]["image_url"])
    assert img.status_code == 200 and img["Content-Type"] == "image/jpeg"
    # split by subject
    split = api.get(f"/api/v1/datasets/{ds.id}/split/?mode=kfold&folds=3").json()["splits"]
    assert len(split) == 3
    for fold in split:
        sides = [set(fold[k]["subjects"]) for k in ("train", "validation", "test")]
        assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    page = api.get(f"/research/datasets/{ds.id}/?label=positive")
    assert page.status_code == 200 and page.content.count(b"/image/") == 10


def test_the_same_images_twice_are_refused_and_nothing_is_added(lab):
    api, ds, _ = lab
    assert upload(api, ds, itch_zip(n=9, subjects=3)).status_code == 201
    res = upload(api, ds, itch_zip(n=9, subjects=3))
    assert res.status_code == 400
    assert all(e["reason"] == "this image is already in the data set" for e in res.json()["errors"])
    assert ds.samples.count() == 9


BAD = {
    "traversal": ({"../../etc/evil.jpg": b"x"}, [], "../../etc/evil.jpg", "path traversal"),
    "windows traversal": ({"..\\..\\etc\\evil.jpg": b"x"}, [], "../../etc/evil.jpg", "path traversal"),
    "absolute": ({"/tmp/evil.jpg": b"x"}, [], "/tmp/evil.jpg", "absolute path"),
    "manifest traversal": ({}, [["../outside.jpg", "negative", 1, "S01"]], "manifest.csv", "path traversal"),
    "not an image": ({"images/notes.jpg": b"this is text, not a JPEG"}, [["images/notes.jpg", "neutral", 1, "S01"]],
                     "images/notes.jpg", "not an image"),
    "wrong extension": ({"images/run.sh": b"#!/bin/sh\n"}, [["images/run.sh", "neutral", 1, "S01"]], "images/run.sh",
                        "not an image file"),
    "tiny image": ({"images/tiny.png": png(np.random.default_rng(0).integers(0, 255, (12, 12), dtype=np.uint8))},
                   [["images/tiny.png", "neutral", 1, "S01"]], "images/tiny.png", "no face-sized content"),
    "blank image": ({"images/blank.png": png(np.full((64, 64), 128, np.uint8))},
                    [["images/blank.png", "neutral", 1, "S01"]], "images/blank.png", "blank"),
    "bad label": ({"images/x.png": png(np.random.default_rng(1).integers(0, 255, (48, 48), dtype=np.uint8))},
                  [["images/x.png", "angry", 1, "S01"]], "images/x.png", "not one of negative, neutral, positive"),
    "no consent": ({"images/y.png": png(np.random.default_rng(2).integers(0, 255, (48, 48), dtype=np.uint8))},
                   [["images/y.png", "neutral", 0, "S99"]], "images/y.png", "no recorded consent"),
    "unlisted file": ({"README.txt": b"hello"}, [], "README.txt", "not listed in manifest.csv"),
    "manifest field over the csv limit": ({}, [["x" * 200_000, "neutral", 1, "S01"]], "manifest.csv",
                                          "unreadable CSV"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_file_rejects_the_whole_import_with_its_reason(lab, case):
    api, ds, _ = lab
    files, rows, file, reason = BAD[case]
    res = upload(api, ds, itch_zip(n=9, subjects=3, extra_files=files, extra_rows=rows))
    assert res.status_code == 400
    errors = res.json()["errors"]
    assert any(e["file"].startswith(file) and reason in e["reason"] for e in errors), errors
    # nothing half-imported: no samples, no subjects, no files
    assert ds.samples.count() == 0 and ds.subjects.count() == 0
    assert DatasetImport.objects.get(dataset=ds).status == "rejected"
    assert not default_storage.exists(f"datasets/{ds.id}")


def test_zips_as_windows_and_macos_tools_make_them_are_accepted(lab):
    """Backslash separators (Windows), AppleDouble `._` files and `__MACOSX/` (macOS),
    an extra top folder, and a manifest saved by Excel (BOM, ';') — all one data set."""
    api, ds, _ = lab
    src = zipfile.ZipFile(io.BytesIO(itch_zip(n=9, subjects=3)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith(".csv"):
                text = data.decode().replace(",", ";").replace("images/", "images\\")
                data = ("\ufeff" + text).encode()
            z.writestr("export\\" + name.replace("/", "\\"), data)
            if name.startswith("images/"):
                z.writestr("export\\images\\._" + name.split("/")[1], b"\0\5\26\7 AppleDouble")
                z.writestr("__MACOSX/export/images/._" + name.split("/")[1], b"\0\5\26\7")
        z.writestr("export\\.DS_Store", b"\0\0\0\1Bud1")
    res = upload(api, ds, buf.getvalue())
    assert res.status_code == 201, res.json()
    assert res.json()["accepted"] == 9 and ds.samples.count() == 9 and ds.subjects.count() == 3


def test_a_zip_bomb_is_refused_before_it_is_inflated(lab):
    api, ds, _ = lab
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.csv", "path,label,is_worker,subject_id\nbomb.png,neutral,1,S01\n")
        z.writestr("bomb.png", b"\0" * (6 * 1024 * 1024))  # 6 MB of zeros → a few KB
    res = upload(api, ds, buf.getvalue())
    assert res.status_code == 400
    assert any("zip bomb" in e["reason"] for e in res.json()["errors"])


def test_a_pixel_bomb_is_refused_before_it_is_decoded(lab):
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    # A valid PNG header declaring 60000 x 60000 pixels, with almost no data.
    png_bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    api, ds, _ = lab
    res = upload(api, ds, itch_zip(n=3, subjects=3, extra_files={"images/bomb.png": png_bomb},
                                   extra_rows=[["images/bomb.png", "neutral", 1, "S01"]]))
    assert res.status_code == 400
    assert any(e["file"] == "images/bomb.png" and "megapixels" in e["reason"] for e in res.json()["errors"]), \
        res.json()["errors"]


def test_an_oversized_upload_and_a_non_zip_are_refused(lab, settings):
    api, ds, _ = lab
    res = upload(api, ds, b"PK\x03\x04 not really a zip", "fake.zip")
    assert res.status_code == 400 and "not a zip archive" in res.json()["errors"][0]["reason"]
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "IMPORT_MAX_ZIP_BYTES": 1000}
    res = upload(api, ds, itch_zip(n=3, subjects=3))
    assert res.status_code == 400 and "limited to" in res.json()["errors"][0]["reason"]
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "IMPORT_MAX_ZIP_BYTES": 10**9, "IMPORT_MAX_UNPACKED_BYTES": 1000}
    res = upload(api, ds, itch_zip(n=3, subjects=3))
    assert res.status_code == 400 and "when unpacked" in res.json()["errors"][0]["reason"]
    assert ds.samples.count() == 0


def test_consent_recorded_through_the_api_admits_a_subject(lab):
    api, ds, researcher = lab
    res = api.post("/api/v1/subjects/", {"dataset": ds.id, "code": "S01", "is_worker": True,
                                         "consent_given_at": "2026-09-30T10:00:00Z", "consent_scope": "training"})
    assert res.status_code == 201, res.json()
    future = api.post("/api/v1/subjects/", {"dataset": ds.id, "code": "S02", "is_worker": True,
                                            "consent_given_at": "2099-01-01T00:00:00Z", "consent_scope": "x"})
    assert future.status_code == 400 and "consent_given_at" in future.json()
    data = itch_zip(n=3, subjects=1, workers=1, consent=False)
    assert upload(api, ds, data).status_code == 201
    # withdrawal deletes the subject's images and keeps the record
    sid = Subject.objects.get(dataset=ds, code="S01").id
    res = api.post(f"/api/v1/subjects/{sid}/withdraw-consent/")
    assert res.status_code == 200 and res.json()["consent_withdrawn_at"]
    assert ds.samples.count() == 0


@pytest.mark.parametrize("field,value", [("epochs", 0), ("epochs", 100000), ("lr", 5), ("lr", -1),
                                          ("batch_size", 1), ("w", 0), ("w", 1000), ("folds", 1), ("folds", 50),
                                          ("seed", -3), ("split", "70/30"), ("test_fraction", 0.99),
                                          ("worker_weights", [1, 1])])
def test_job_parameters_out_of_range_answer_400_naming_the_field(lab, field, value):
    api, ds, _ = lab
    res = api.post("/api/v1/training-jobs/", {"dataset": ds.id, field: value}, format="json")
    assert res.status_code == 400
    assert field in res.json(), res.json()


def test_a_job_needs_a_known_data_set_with_enough_subjects(lab):
    api, ds, _ = lab
    assert "dataset" in api.post("/api/v1/training-jobs/", {"dataset": 999999}, format="json").json()
    assert "dataset" in api.post("/api/v1/training-jobs/", {"dataset": ds.id}, format="json").json()
    upload(api, ds, itch_zip(n=9, subjects=3))
    res = api.post("/api/v1/training-jobs/", {"dataset": ds.id, "split": "kfold", "folds": 5}, format="json")
    assert res.status_code == 400 and "folds" in res.json()


@pytest.mark.django_db(transaction=True)
def test_deleting_a_data_set_deletes_its_images(tenant, make_user):
    researcher = make_user(tenant.org, Role.RESEARCHER)
    api = APIClient()
    api.force_login(researcher)
    ds_id = api.post("/api/v1/datasets/", {"name": "temp"}).json()["id"]
    assert upload(api, Dataset.objects.get(pk=ds_id), itch_zip(n=6, subjects=2)).status_code == 201
    names = list(Sample.objects.filter(dataset_id=ds_id).values_list("image", flat=True))
    assert names and all(default_storage.exists(n) for n in names)
    assert api.delete(f"/api/v1/datasets/{ds_id}/").status_code == 204
    assert not Sample.objects.filter(dataset_id=ds_id).exists()
    assert not any(default_storage.exists(n) for n in names)
