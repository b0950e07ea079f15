"""Model updates: download, verify, load and test, then swap — or keep the old model.

Installed models live in `<state_dir>/models/`; `current.json` names the one in use and is
replaced atomically (write, fsync, rename), so a board that loses power mid-update boots
either the old model or the new one, never a half-written file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import requests

from .classifier import Classifier, ModelError

log = logging.getLogger(__name__)

MAX_MODEL_BYTES = 512 * 1024 * 1024


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _safe_name(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", version)[:120] or "model"


class ModelStore:
    def __init__(self, state_dir: str | Path, loader: Callable[..., Classifier]):
        self.dir = Path(state_dir) / "models"
        self.loader = loader  # loader(path, version=...) -> Classifier, raises ModelError
        self.failed: dict[tuple[str, str], str] = {}  # (version, sha256) -> reason, not retried

    @property
    def pointer(self) -> Path:
        return self.dir / "current.json"

    def installed(self) -> dict | None:
        try:
            data = json.loads(self.pointer.read_text())
            return data if Path(data["path"]).is_file() else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def load_installed(self) -> Classifier | None:
        """The model a previous update installed, if it still loads."""
        current = self.installed()
        if not current:
            return None
        try:
            return self.loader(current["path"], version=current.get("version"))
        except ModelError as exc:
            log.error("installed model %s does not load (%s); using the configured model", current.get("version"), exc)
            return None

    def update(self, session: requests.Session, url: str, version: str, sha256: str,
               timeout: float = 60.0, origin: str | None = None) -> Classifier:
        """Download and install `version`; returns the loaded Classifier or raises ModelError.
        Nothing changes on disk unless every check passed."""
        key = (version, sha256.lower())
        if key in self.failed:
            raise ModelError(self.failed[key])
        try:
            return self._update(session, url, version, sha256.lower(), timeout, origin)
        except ModelError as exc:
            # The same file would fail the same way: remember it rather than download it
            # again every heartbeat. A new version or checksum is tried afresh.
            if "download failed" not in str(exc):
                self.failed[key] = str(exc)
            raise

    def _update(self, session, url, version, sha256, timeout, origin) -> Classifier:
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.dir / f"{_safe_name(version)}.onnx"
        tmp = self.dir / f".download-{os.getpid()}-{_safe_name(version)}.onnx"
        log.info("model update: downloading %s", version)
        digest = hashlib.sha256()
        size = 0
        try:
            try:
                headers = None
                if origin and origin_of(url) != origin:
                    # The device token is for our server only, not for a CDN or mirror.
                    headers = {"Authorization": None}
                with session.get(url, stream=True, timeout=timeout, headers=headers) as r:
                    if r.status_code != 200:
                        raise ModelError(f"model {version}: download failed ({r.status_code})")
                    with open(tmp, "wb") as f:
                        for chunk in r.iter_content(1 << 16):
                            size += len(chunk)
                            if size > MAX_MODEL_BYTES:
                                raise ModelError(f"model {version}: larger than {MAX_MODEL_BYTES >> 20} MB; refused")
                            digest.update(chunk)
                            f.write(chunk)
                        f.flush()
                        os.fsync(f.fileno())
            except requests.RequestException as exc:
                raise ModelError(f"model {version}: download failed ({type(exc).__name__})") from None
            got = digest.hexdigest()
            if got != sha256:
                raise ModelError(f"model {version}: sha256 mismatch (expected {sha256[:12]}…, got {got[:12]}…); "
                                 "kept the current model")
            try:
                clf = self.loader(str(tmp), version=version)
            except ModelError as exc:
                raise ModelError(f"model {version} refused: {exc}; kept the current model") from None
            os.replace(tmp, final)
            clf.info = type(clf.info)(**{**clf.info.__dict__, "path": str(final)})
            previous = self.installed()
            self._point_to(final, version, sha256)
            self._prune(keep={final, Path(previous["path"]) if previous else final})
            return clf
        finally:
            tmp.unlink(missing_ok=True)

    def _prune(self, keep: set[Path]) -> None:
        """Installed models other than the current and the previous one go: a board's disk
        is small, and one step back is all a rollback needs."""
        for path in self.dir.glob("*.onnx"):
            if path not in keep and not path.name.startswith(".download-"):
                path.unlink(missing_ok=True)

    def _point_to(self, path: Path, version: str, sha256: str) -> None:
        tmp = self.pointer.with_suffix(".json.tmp")
        with open(tmp, "w") as f:
            json.dump({"version": version, "path": str(path), "sha256": sha256}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.pointer)
        try:  # make the rename itself durable
            fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
