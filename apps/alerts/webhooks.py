"""Signed webhook calls, and the guard that keeps them from reaching our own network.

Signature: `X-Affectwatch-Signature: t=<unix seconds>,v1=<hex>` where v1 is
HMAC-SHA256(secret, "<t>.<raw body>"). Receivers recompute it over the raw bytes they
received and refuse old timestamps, which stops replays (see `verify_signature`).

SSRF: a webhook URL is typed by a customer, so in production a call may not reach
private, loopback, link-local or otherwise non-public addresses. Checking the host name
before the call is not enough (DNS can answer differently a second later), so the
address is checked on the socket itself, after it connected and before a byte is sent.
"""
import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

SIGNATURE_HEADER = "X-Affectwatch-Signature"
SECRET_PREFIX = "whsec"


def new_webhook_secret() -> str:
    return f"{SECRET_PREFIX}_{secrets.token_urlsafe(32)}"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, tolerance_s: int = 300, now: float | None = None) -> bool:
    """What a receiver does: recompute the MAC over the raw body, compare in constant
    time, refuse timestamps further than `tolerance_s` from now."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
    except (ValueError, KeyError):
        return False
    now = time.time() if now is None else now
    if abs(now - t) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def private_addresses_allowed() -> bool:
    return settings.AFFECTWATCH["WEBHOOK_ALLOW_PRIVATE"]


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class WebhookRefused(Exception):
    """The call may not be made (not retried)."""


def validate_webhook_url(url: str) -> str:
    """For forms and serializers: http(s) only, a host, and in production no address we
    can already tell is private. The socket guard checks again at call time."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValidationError("The webhook URL must start with http:// or https://.")
    if not parts.hostname:
        raise ValidationError("The webhook URL needs a host name.")
    if parts.username or parts.password:
        raise ValidationError("Put no user name or password in the webhook URL; requests are signed instead.")
    if not private_addresses_allowed():
        host = parts.hostname
        if host == "localhost" or host.endswith(".localhost") or host.endswith(".internal"):
            raise ValidationError("The webhook URL must point to a public address.")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None and not is_public_address(host):
            raise ValidationError("The webhook URL must point to a public address.")
    return url


def _check_peer(sock):
    if private_addresses_allowed():
        return
    address = sock.getpeername()[0]
    if not is_public_address(address):
        sock.close()
        raise WebhookRefused(f"refused to call non-public address {address}")


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self):
        sock = super()._new_conn()
        _check_peer(sock)
        return sock


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self):
        sock = super()._new_conn()
        _check_peer(sock)
        return sock


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def guarded_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies from the environment: the guard must see the real peer
    adapter = _GuardedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class Retryable(Exception):
    """The receiver may be back later: 5xx, 429, timeouts, refused connections."""


def post(url: str, secret: str, body: bytes, headers: dict | None = None, timeout: float | None = None) -> int:
    """POSTs a signed body. Returns the status code of a 2xx answer; raises Retryable for
    what is worth retrying and WebhookRefused for what is not."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise WebhookRefused("webhook URL must be http(s)")
    timeout = settings.AFFECTWATCH["WEBHOOK_TIMEOUT_S"] if timeout is None else timeout
    all_headers = {
        "Content-Type": "application/json",
        "User-Agent": "Affectwatch-Webhooks/1",
        SIGNATURE_HEADER: sign(secret, body),
        **(headers or {}),
    }
    with guarded_session() as session:
        try:
            res = session.post(url, data=body, headers=all_headers, timeout=timeout, allow_redirects=False)
        except WebhookRefused:
            raise  # the guard's refusal passes through urllib3 and requests as it is
        except requests.ConnectionError as exc:
            raise Retryable(f"connection failed: {exc.__class__.__name__}") from exc
        except requests.Timeout as exc:
            raise Retryable("timed out") from exc
        except (requests.RequestException, socket.error) as exc:
            raise Retryable(f"{exc.__class__.__name__}: {str(exc)[:200]}") from exc
    if 200 <= res.status_code < 300:
        return res.status_code
    if res.status_code >= 500 or res.status_code == 429:
        raise Retryable(f"HTTP {res.status_code}")
    raise WebhookRefused(f"HTTP {res.status_code}")
