"""Helpers for the alert tests: feeding labels through the real ingest, and a real HTTP
server on 127.0.0.1 that receives webhooks."""
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.telemetry.ingest import ingest
from tests.telemetry_support import release_minutes


def released(now):
    """Releases every device's minutes up to `now`'s (as beat would by RELEASE_DELAY
    later) and returns the time at which `now`'s minute is an evaluation's newest."""
    from apps.sites.models import Device

    release_minutes(*Device.objects.all(), until=now + timedelta(minutes=1))
    return now + settings.AFFECTWATCH["RELEASE_DELAY"] + timedelta(minutes=1)


def evaluate(now):
    """`evaluation.evaluate_all` once `now`'s minute is released: what the rules see."""
    from apps.alerts import evaluation

    return evaluation.evaluate_all(released(now))


def feed(device, negative=0, neutral=0, positive=0, ts=None, people=None, camera="cam0"):
    """Ingests one batch of labels at `ts` through apps.telemetry.ingest, as the API does.
    `people` distinct tracks share the labels (default: one track per label)."""
    ts = ts or timezone.now()
    labels = ["negative"] * negative + ["neutral"] * neutral + ["positive"] * positive
    events = [{"ts": ts.isoformat(), "camera": camera, "track": str(i % people if people else i), "label": label,
               "confidence": 0.9} for i, label in enumerate(labels)]
    answer, _ = ingest(device, {"batch_id": str(uuid.uuid4()), "events": events})
    assert answer["accepted"] == len(events), answer
    return ts


def make_rule(site, user=None, **over):
    from apps.alerts.models import AlertRule
    from apps.alerts.webhooks import new_webhook_secret

    fields = {"name": "High negative share", "threshold_pct": 50, "window_minutes": 10, "min_detections": 10,
              "cooldown_minutes": 30, "webhook_secret": new_webhook_secret(), "created_by": user}
    fields.update(over)
    return AlertRule.objects.create(site=site, **fields)


class WebhookReceiver:
    """Answers POSTs with the scripted statuses (then 200), recording what came."""

    def __init__(self):
        self.requests = []
        self.statuses = []
        self.delays = []  # seconds to stall before answering, per request
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if receiver.delays:
                    time.sleep(receiver.delays.pop(0))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/affectwatch"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, count, timeout=60):
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return len(self.requests) >= count

    def json(self, i):
        return json.loads(self.requests[i]["body"])


@pytest.fixture
def webhook_receiver():
    receiver = WebhookReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
