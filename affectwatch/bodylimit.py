"""Request bodies, before Django sees them (ASGI middleware).

Django's ASGI handler reads a whole body into a spooled file before any view or limit
runs, and reads a chunked body (no Content-Length) as empty. Here, per path:

- a declared Content-Length above the path's limit is answered 413 at once, without
  reading the body;
- a chunked body is read up to the limit (413 past it) and handed to Django with its
  Content-Length, so views see it whole;
- `Content-Encoding: gzip` (ingest only: boards on cellular links) is inflated with a
  limit on the *inflated* size (413 past it, 400 when corrupt); other encodings are 415.

Errors on /api/ paths are JSON (`{"detail": …}`), like every other API error.
"""
from __future__ import annotations

import json
import re
import zlib

from django.conf import settings

UPLOAD_PATHS = re.compile(r"^/(api/v1/datasets/\d+/imports/|research/datasets/\d+/import/)$")
GZIP_PATHS = ("/api/v1/ingest/",)


def limits_for(path: str) -> tuple[int, bool]:
    """(byte limit of the body as sent and, for gzip, as inflated; gzip allowed)."""
    if path.startswith(GZIP_PATHS):
        return settings.AFFECTWATCH["INGEST_MAX_BYTES"], True
    if UPLOAD_PATHS.match(path):
        return settings.AFFECTWATCH["UPLOAD_MAX_BYTES"], False
    return settings.AFFECTWATCH["REQUEST_MAX_BYTES"], False


class BodyLimit:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit, gzip_ok = limits_for(scope["path"])
        headers = [(k.lower(), v) for k, v in scope["headers"]]
        named = dict(headers)
        encoding = named.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"identity", b"gzip") or (encoding == b"gzip" and not gzip_ok):
            return await refuse(scope, send, 415, f"Content-Encoding {encoding.decode('latin-1')[:20]!r} is not "
                                                  "accepted here" + ("; use gzip" if gzip_ok else ""))
        declared = named.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return await refuse(scope, send, 400, "Content-Length is not a number")
            if size > limit:
                return await refuse(scope, send, 413, f"body of {size} bytes exceeds the {limit} byte limit")
            if encoding == b"identity":
                return await self.app(scope, receive, send)
        elif b"transfer-encoding" not in named:  # no body at all (a GET, most likely)
            return await self.app(scope, receive, send)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                return await refuse(scope, send, 413, f"body exceeds the {limit} byte limit")
        if encoding == b"gzip":
            try:
                inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                body = inflater.decompress(bytes(body), limit + 1)
                if len(body) > limit or inflater.unconsumed_tail:
                    return await refuse(scope, send, 413, f"body exceeds the {limit} byte limit once inflated")
                if not inflater.eof or inflater.unused_data:
                    return await refuse(scope, send, 400, "gzip body is truncated or has data after its end")
            except zlib.error:
                return await refuse(scope, send, 400, "body is not valid gzip")
        kept = [(k, v) for k, v in headers if k not in (b"content-length", b"content-encoding", b"transfer-encoding")]
        scope = {**scope, "headers": [*kept, (b"content-length", str(len(body)).encode())]}
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def refuse(scope, send, status: int, detail: str):
    if scope["path"].startswith("/api/"):
        body, kind = json.dumps({"detail": detail}).encode(), b"application/json"
    else:
        body, kind = detail.encode(), b"text/plain; charset=utf-8"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
