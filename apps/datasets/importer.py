"""Importing a zip of consented, labelled face images, all or nothing.

The zip holds `manifest.csv` (columns `path,label,is_worker,subject_id`, optionally
`context`) next to the images, and optionally `subjects.csv`
(`subject_id,is_worker,consent_given_at,consent_scope`) recording consent for subjects
the data set does not know yet. Every file is checked before anything is stored; if any
file is rejected the import stores nothing and answers with a reason per file.

The archive is never extracted to disk: names are checked (no absolute paths, no `..`,
no links), sizes are read from the directory and enforced again while reading, and a
suspicious compression ratio is refused before a byte is inflated.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import posixpath
import stat
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, time, timezone as dt_timezone

import cv2
import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from edge_agent.paths import is_os_metadata
from workers.data.csvtext import dict_reader

from .models import DatasetImport, Label, Sample, Subject


def _limit(name: str) -> int:
    """An import limit from settings.AFFECTWATCH (read per import: override_settings works)."""
    return settings.AFFECTWATCH[name]


MAX_RATIO = 100  # inflated / compressed; images barely compress, bombs compress ~1000x
MAX_PIXELS = 16_000_000
MIN_FACE_PX = 32  # a face smaller than this on its shorter side carries no expression
MIN_CONTRAST = 2.0  # grey-level standard deviation below which an image is blank
IMAGE_EXTENSIONS = {".jpg": ".jpg", ".jpeg": ".jpg", ".png": ".png", ".bmp": ".bmp", ".webp": ".webp", ".pgm": ".pgm"}
TRUE, FALSE = {"1", "true", "yes", "y", "t"}, {"0", "false", "no", "n", "f"}
MANIFEST, SUBJECTS = "manifest.csv", "subjects.csv"


class ImportRejected(Exception):
    """The whole import is refused; `errors` say why, per file where there is one."""

    def __init__(self, errors):
        super().__init__("; ".join(f"{e['file']}: {e['reason']}" for e in errors[:5]))
        self.errors = errors


@dataclass
class _Plan:
    new_subjects: dict = field(default_factory=dict)  # code -> dict(is_worker, given_at, scope)
    samples: list = field(default_factory=list)  # dicts for Sample rows
    errors: list = field(default_factory=list)

    def reject(self, file, reason):
        self.errors.append({"file": file, "reason": reason})


def normalize_name(name: str) -> str:
    """A member or manifest path with Windows separators turned into '/' (zips made on
    Windows store 'images\\a.jpg'); `unsafe_name` then checks the result."""
    return name.replace("\\", "/")


def unsafe_name(name: str) -> str | None:
    """Why a (normalized) member name could escape the data set's folder, or None."""
    if "\x00" in name:
        return "file name contains a NUL byte"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path (path traversal)"
    if ".." in name.split("/"):
        return "'..' in the path (path traversal)"
    return None


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """At most `limit` bytes, whatever the directory claims: a forged size cannot make
    us inflate more."""
    with zf.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes when inflated")
    return data


def _parse_bool(value):
    v = (value or "").strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    return None


def _parse_when(value):
    value = (value or "").strip()
    if not value:
        return None
    dt = parse_datetime(value)
    if dt is None:
        d = parse_date(value)
        if d is None:
            return None
        dt = datetime.combine(d, time(0, 0))
    if timezone.is_naive(dt):
        dt = dt.replace(tzinfo=dt_timezone.utc)
    return dt


def _header_size(data: bytes):
    """(width, height) from the image header without decoding the pixels, or None."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Image.DecompressionBombError:
        return (MAX_PIXELS, MAX_PIXELS)  # far beyond any face; Pillow refused to say more
    except Exception:  # noqa: BLE001 - not a format Pillow knows: OpenCV decides below
        return None


def check_image(data: bytes) -> tuple[int, int] | str:
    """(width, height), or why the bytes are not a usable face image."""
    size = _header_size(data)
    if size and size[0] * size[1] > MAX_PIXELS:
        # A few KB of PNG can declare a gigapixel: refuse before allocating it.
        return f"image declares more than {MAX_PIXELS // 1_000_000} megapixels (a decompression bomb?)"
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE) if data else None
    except cv2.error:
        img = None
    if img is None:
        return "not an image (cannot be decoded as JPEG, PNG, BMP, WebP or PGM)"
    h, w = img.shape[:2]
    if min(h, w) < MIN_FACE_PX:
        return f"image is {w}x{h}: no face-sized content (the shorter side needs at least {MIN_FACE_PX} px)"
    if float(img.std()) < MIN_CONTRAST:
        return "image is blank (uniform grey level): no face-sized content"
    return w, h


def _csv_rows(zf, info, plan, required):
    try:
        text = _read(zf, info, _limit('IMPORT_MAX_FILE_BYTES')).decode("utf-8-sig")
    except (ValueError, UnicodeDecodeError) as exc:
        plan.reject(info.filename, f"unreadable CSV ({exc})")
        return None
    try:
        reader = dict_reader(text)  # a BOM, ';' or tabs, as spreadsheet tools write
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            plan.reject(info.filename, f"missing column(s) {', '.join(missing)}; expected {','.join(required)}")
            return None
        return list(reader)
    except csv.Error as exc:  # a field over the csv module's size limit, a stray quote, …
        plan.reject(info.filename, f"unreadable CSV ({exc})")
        return None


def plan_import(dataset, zf: zipfile.ZipFile) -> _Plan:
    """Everything an import would store, checked before anything is: the archive's
    members, then subjects.csv's consent records, then each manifest row's image. Raises
    ImportRejected for an archive that cannot be planned at all; otherwise the plan's
    `errors` list every refused file (any error refuses the whole import)."""
    plan = _Plan()
    members, manifest = _check_members(zf, plan)
    root = posixpath.dirname(manifest)
    subjects_name = posixpath.join(root, SUBJECTS) if root else SUBJECTS
    known = {s.code: s for s in dataset.subjects.all()}
    if subjects_name in members:
        _check_subjects(zf, members[subjects_name], subjects_name, known, plan)
    listed = _check_manifest(dataset, zf, members, manifest, root, known, plan) | {manifest, subjects_name}
    for name in members:
        if name not in listed:
            plan.reject(name, f"not listed in {MANIFEST}")
    if not plan.samples and not plan.errors:
        plan.reject(manifest, "lists no images")
    return plan


def _check_members(zf: zipfile.ZipFile, plan: _Plan) -> tuple[dict, str]:
    """The archive's usable members by normalised name, and the manifest's name (the
    shallowest). Unsafe names, links, encrypted or oversized entries and zip bombs are
    refused; OS metadata is ignored."""
    infos = zf.infolist()
    if len(infos) > _limit('IMPORT_MAX_ENTRIES'):
        raise ImportRejected([{"file": "(archive)", "reason": f"{len(infos)} entries; at most {_limit('IMPORT_MAX_ENTRIES')}"}])
    if sum(i.file_size for i in infos) > _limit('IMPORT_MAX_UNPACKED_BYTES'):
        raise ImportRejected([{"file": "(archive)", "reason": f"more than {_limit('IMPORT_MAX_UNPACKED_BYTES') >> 20} MB when unpacked"}])
    members, manifest = {}, None
    for info in infos:
        name = normalize_name(info.filename)
        if name.endswith("/") or is_os_metadata(name):  # __MACOSX/, ._AppleDouble, .DS_Store, Thumbs.db
            continue
        why = unsafe_name(name)
        if why is None and _is_link(info):
            why = "symbolic link"
        if why is None and info.flag_bits & 0x1:
            why = "encrypted entry"
        if why is None and info.file_size > _limit('IMPORT_MAX_FILE_BYTES'):
            why = f"{info.file_size} bytes; at most {_limit('IMPORT_MAX_FILE_BYTES')} per file"
        if why is None and info.file_size > 1024 * 1024 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            why = f"compression ratio {info.file_size // max(info.compress_size, 1)}:1 (zip bomb?)"
        if why:
            plan.reject(name, why)
            continue
        members[name] = info
        if posixpath.basename(name) == MANIFEST and (manifest is None or name.count("/") < manifest.count("/")):
            manifest = name
    if manifest is None:
        plan.reject("(archive)", f"no {MANIFEST} (columns path,label,is_worker,subject_id)")
        raise ImportRejected(plan.errors)
    return members, manifest


def _check_subjects(zf, info, subjects_name, known, plan: _Plan) -> None:
    """subjects.csv: each row a consent record (plan.new_subjects), or the row's reason."""
    rows = _csv_rows(zf, info, plan, ("subject_id", "is_worker", "consent_given_at", "consent_scope"))
    for n, row in enumerate(rows or [], start=2):
        where = f"{subjects_name}:{n}"
        code = (row["subject_id"] or "").strip()
        worker = _parse_bool(row["is_worker"])
        given = _parse_when(row["consent_given_at"])
        scope = (row["consent_scope"] or "").strip()
        if not code or len(code) > 64:
            plan.reject(where, "subject_id must be 1-64 characters")
        elif worker is None:
            plan.reject(where, f"is_worker must be 1/0/true/false, not {row['is_worker']!r}")
        elif given is None or not scope:
            plan.reject(where, f"subject {code}: consent needs consent_given_at (a date) and consent_scope")
        elif given > timezone.now():
            plan.reject(where, f"subject {code}: consent_given_at is in the future")
        elif code in known and known[code].is_worker != worker:
            plan.reject(where, f"subject {code} is already recorded as {'a worker' if known[code].is_worker else 'a non-worker'}")
        else:
            plan.new_subjects[code] = {"is_worker": worker, "consent_given_at": given, "consent_scope": scope[:300]}


def _check_manifest(dataset, zf, members, manifest, root, known, plan: _Plan) -> set:
    """manifest.csv: each row's image checked (label, subject and consent, presence,
    type, pixels, duplicates) and planned (plan.samples). Returns the names it listed."""
    rows = _csv_rows(zf, members[manifest], plan, ("path", "label", "is_worker", "subject_id"))
    listed, seen_sha = set(), {}
    stored_sha = set(dataset.samples.values_list("sha256", flat=True))
    for n, row in enumerate(rows or [], start=2):
        rel = normalize_name((row["path"] or "").strip())
        where = f"{MANIFEST}:{n} ({rel or 'no path'})"
        why = unsafe_name(rel) if rel else "empty path"
        if why:
            plan.reject(where, why)
            continue
        name = posixpath.normpath(posixpath.join(root, rel)) if root else posixpath.normpath(rel)
        listed.add(name)
        label = (row["label"] or "").strip().lower()
        code = (row["subject_id"] or "").strip()
        worker = _parse_bool(row["is_worker"])
        if label not in Label.values:
            plan.reject(name, f"label {row['label']!r} is not one of negative, neutral, positive")
            continue
        if worker is None:
            plan.reject(name, f"is_worker must be 1/0/true/false, not {row['is_worker']!r}")
            continue
        subject = known.get(code)
        consented = plan.new_subjects.get(code) or (subject and subject.has_consent and {"is_worker": subject.is_worker})
        if not code:
            plan.reject(name, "no subject_id")
            continue
        if not consented:
            plan.reject(name, f"subject {code} has no recorded consent (add it to {SUBJECTS} or record it on the data set first)")
            continue
        if consented["is_worker"] != worker:
            plan.reject(name, f"is_worker={int(worker)} disagrees with subject {code}'s record")
            continue
        info = members.get(name)
        if info is None:
            plan.reject(name, "listed in the manifest but not in the archive")
            continue
        ext = IMAGE_EXTENSIONS.get(posixpath.splitext(name)[1].lower())
        if ext is None:
            plan.reject(name, "not an image file (expected .jpg, .jpeg, .png, .bmp, .webp or .pgm)")
            continue
        try:
            data = _read(zf, info, _limit('IMPORT_MAX_FILE_BYTES'))
        except (ValueError, zipfile.BadZipFile, OSError, EOFError) as exc:
            plan.reject(name, f"unreadable ({exc})")
            continue
        checked = check_image(data)
        if isinstance(checked, str):
            plan.reject(name, checked)
            continue
        sha = hashlib.sha256(data).hexdigest()
        if sha in seen_sha:
            plan.reject(name, f"same image as {seen_sha[sha]}")
            continue
        if sha in stored_sha:
            plan.reject(name, "this image is already in the data set")
            continue
        seen_sha[sha] = name
        plan.samples.append({  # the bytes are read again when stored: memory stays flat
            "subject": code, "label": label, "member": info, "sha256": sha, "extension": ext,
            "width": checked[0], "height": checked[1], "context": (row.get("context") or "").strip()[:200],
            "original_name": name[:300],
        })
    return listed


def import_zip(dataset, upload, user=None) -> DatasetImport:
    """Import `upload` (a file object with .name and .size) into `dataset`.

    Returns the DatasetImport; on rejection it has status `rejected`, its errors and
    no samples. Either every listed image is stored, or none is."""
    filename = os.path.basename(getattr(upload, "name", "upload.zip"))[:300]
    size = getattr(upload, "size", None)

    def rejected(errors):
        return DatasetImport.objects.create(dataset=dataset, uploaded_by=user, filename=filename, size=size or 0,
                                            status=DatasetImport.Status.REJECTED, errors=errors)

    if size is not None and size > _limit('IMPORT_MAX_ZIP_BYTES'):
        return rejected([{"file": filename, "reason": f"{size} bytes; uploads are limited to {_limit('IMPORT_MAX_ZIP_BYTES') >> 20} MB"}])
    try:
        zf = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return rejected([{"file": filename, "reason": f"not a zip archive ({exc})"}])
    with zf:
        try:
            plan = plan_import(dataset, zf)
        except ImportRejected as exc:
            return rejected(exc.errors)
        except zipfile.BadZipFile as exc:
            return rejected([{"file": filename, "reason": f"corrupt zip archive ({exc})"}])
        if plan.errors:
            return rejected(plan.errors)
        return _store(dataset, plan, zf, filename, size or 0, user)


def _store(dataset, plan: _Plan, zf, filename, size, user) -> DatasetImport:
    written = []
    try:
        with transaction.atomic():
            now = timezone.now()
            subjects = {s.code: s for s in dataset.subjects.select_for_update()}
            for code, rec in plan.new_subjects.items():
                s = subjects.get(code) or Subject(dataset=dataset, code=code, is_worker=rec["is_worker"])
                s.consent_given_at, s.consent_scope = rec["consent_given_at"], rec["consent_scope"]
                s.consent_recorded_by, s.consent_recorded_at, s.consent_withdrawn_at = user, now, None
                s.save()
                subjects[code] = s
            record = DatasetImport.objects.create(dataset=dataset, uploaded_by=user, filename=filename, size=size,
                                                  status=DatasetImport.Status.ACCEPTED, accepted=len(plan.samples))
            for item in plan.samples:
                sample = Sample(dataset=dataset, subject=subjects[item["subject"]], label=item["label"],
                                sha256=item["sha256"], extension=item["extension"], width=item["width"],
                                height=item["height"], context=item["context"], original_name=item["original_name"],
                                imported=record)
                data = _read(zf, item["member"], _limit('IMPORT_MAX_FILE_BYTES'))
                if hashlib.sha256(data).hexdigest() != item["sha256"]:
                    raise ValueError(f"{item['original_name']} changed while it was imported")
                sample.image.save("x", ContentFile(data), save=False)
                written.append(sample.image.name)
                sample.save()
    except Exception:
        for name in written:  # a failed transaction leaves no orphaned files either
            default_storage.delete(name)
        raise
    return record
