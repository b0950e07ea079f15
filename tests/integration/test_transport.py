"""Request bodies through the real ASGI server (uvicorn): chunked bodies read whole,
declared sizes over the limit refused before they are read, gzip batches inflated
with a limit, and every such error on /api/ answered in JSON."""
import gzip
import json
import socket
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from django.utils import timezone

from apps.telemetry.models import EmotionEvent


def batch(n=5, track="t"):
    now = timezone.now().isoformat()
    return {"batch_id": str(uuid.uuid4()), "events": [
        {"ts": now, "camera": "cam0", "track": f"{track}{i}", "label": "neutral", "confidence": 0.9} for i in range(n)]}


def ingest(server, token, data, **headers):
    return requests.post(f"{server.url}/api/v1/ingest/", data=data, timeout=30,
                         headers={"Authorization": f"Device {token}", "Content-Type": "application/json", **headers})


def test_a_chunked_batch_is_read_whole(platform_server, tenant):
    body = json.dumps(batch(7)).encode()
    chunks = (body[i:i + 100] for i in range(0, len(body), 100))  # a generator: Transfer-Encoding: chunked
    res = ingest(platform_server, tenant.token, chunks)
    assert res.status_code == 200 and res.json()["accepted"] == 7, res.text
    assert EmotionEvent.objects.filter(device=tenant.device).count() == 7


def test_a_gzip_batch_is_stored_and_a_gzip_bomb_refused(platform_server, tenant):
    res = ingest(platform_server, tenant.token, gzip.compress(json.dumps(batch(9)).encode()), **{"Content-Encoding": "gzip"})
    assert res.status_code == 200 and res.json()["accepted"] == 9, res.text
    bomb = gzip.compress(b'{"batch_id":"' + b" " * (64 * 1024 * 1024) + b'"}')  # 64 MiB inflated, 64 kB sent
    res = ingest(platform_server, tenant.token, bomb, **{"Content-Encoding": "gzip"})
    assert res.status_code == 413 and "inflated" in res.json()["detail"]
    for data, encoding, status in ((b"\x1f\x8b not gzip", "gzip", 400), (b"{}", "br", 415)):
        res = ingest(platform_server, tenant.token, data, **{"Content-Encoding": encoding})
        assert res.status_code == status and res.headers["Content-Type"] == "application/json", res.text
    assert EmotionEvent.objects.count() == 9


@pytest.mark.parametrize("path", ["/api/v1/enroll/", "/api/v1/ingest/", "/login/"])
def test_a_huge_declared_body_is_refused_before_it_is_read(platform_server, path):
    """256 MiB announced, nothing sent: the answer comes at once (a server that read the
    body first would wait for bytes that never come)."""
    url = urlsplit(platform_server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {256 * 1024 * 1024}\r\n\r\n".encode())
        t0, answer = time.monotonic(), b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(4096)
    head = answer.split(b"\r\n")[0]
    assert b" 413 " in head and time.monotonic() - t0 < 5
    assert (b"application/json" in answer) == path.startswith("/api/")


def test_a_chunked_body_over_the_limit_is_cut_off(platform_server):
    def endless():
        for _ in range(64 * 1024):  # 1 GiB if it were all read
            yield b" " * 16384

    try:
        res = requests.post(f"{platform_server.url}/api/v1/enroll/", data=endless(), timeout=30,
                            headers={"Content-Type": "application/json"})
    except requests.ConnectionError:  # the server answered and closed while we were still sending
        return
    assert res.status_code == 413 and "limit" in res.json()["detail"]
