"""`GET /healthz`: is each part the platform depends on answering?"""
import asyncio

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from kombu import Connection


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def _broker():
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        return conn.transport_cls if isinstance(conn.transport_cls, str) else conn.transport.driver_type


async def _channel_roundtrip():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.ping"})
    await asyncio.wait_for(layer.receive(channel), timeout=2)
    return type(layer).__name__


def _channel_layer():
    return async_to_sync(_channel_roundtrip)()


CHECKS = {"database": _database, "broker": _broker, "channel_layer": _channel_layer}


def healthz(request):
    report, healthy = {}, True
    for name, check in CHECKS.items():
        try:
            report[name] = {"status": "ok", "backend": str(check())}
        except Exception as exc:  # a health check reports every failure, whatever its type
            healthy = False
            report[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    body = {"status": "ok" if healthy else "error", "checks": report}
    return JsonResponse(body, status=200 if healthy else 503)
