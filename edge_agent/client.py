"""HTTP to the Affectwatch backend (docs/edge-protocol.md): enrollment, credentials, and
an authenticated session for ingest, heartbeats and model downloads."""
from __future__ import annotations

import json
import os
import platform
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urljoin

import requests

USER_AGENT = "affectwatch-edge-agent/1"


class EnrollmentError(RuntimeError):
    pass


@dataclass
class Credentials:
    server: str
    device_id: str
    token: str
    site: str = ""
    ingest_url: str = "/api/v1/ingest/"
    heartbeat_url: str = "/api/v1/heartbeat/"
    heartbeat_interval_s: float = 30.0
    enrolled_at: float = 0.0

    def url(self, path: str) -> str:
        return urljoin(self.server.rstrip("/") + "/", path.lstrip("/")) if not path.startswith("http") else path

    def save(self, path: str | Path) -> None:
        """Written with mode 0600 from the start (never world-readable, even briefly), then
        renamed into place so a crash cannot leave half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(asdict(self), f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> "Credentials":
        data = json.loads(Path(path).read_text())
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def hardware_info() -> dict:
    info = {"machine": platform.machine(), "system": platform.system(), "release": platform.release(),
            "python": platform.python_version(), "hostname": socket.gethostname(), "cpus": os.cpu_count()}
    try:  # Jetsons name themselves here ("NVIDIA Jetson Orin Nano Developer Kit")
        info["model"] = Path("/proc/device-tree/model").read_text().strip("\x00\n ")
    except OSError:
        pass
    try:
        info["l4t"] = Path("/etc/nv_tegra_release").read_text().splitlines()[0][:120]
    except (OSError, IndexError):
        pass
    return info


def enroll(server: str, code: str, name: str = "", timeout: float = 15.0) -> Credentials:
    """Trade a one-time enrollment code for a device id and token."""
    server = server.rstrip("/")
    body = {"code": code.strip(), "name": name or socket.gethostname(), "hardware": hardware_info()}
    try:
        r = requests.post(f"{server}/api/v1/enroll/", json=body, timeout=timeout, headers={"User-Agent": USER_AGENT})
    except requests.RequestException as exc:
        raise EnrollmentError(f"cannot reach {server}: {exc}") from None
    if r.status_code != 201:
        try:
            detail = r.json().get("detail") or r.text[:200]
        except ValueError:
            detail = r.text[:200]
        raise EnrollmentError(f"enrollment refused ({r.status_code}): {detail}")
    data = r.json()
    return Credentials(server=server, device_id=str(data["device_id"]), token=data["token"], site=data.get("site", ""),
                       ingest_url=data.get("ingest_url", "/api/v1/ingest/"),
                       heartbeat_url=data.get("heartbeat_url", "/api/v1/heartbeat/"),
                       heartbeat_interval_s=float(data.get("heartbeat_interval_s", 30)), enrolled_at=time.time())


def device_session(creds: Credentials) -> requests.Session:
    s = requests.Session()
    s.headers.update({"Authorization": f"Device {creds.token}", "User-Agent": USER_AGENT})
    return s
