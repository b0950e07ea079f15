"""The publisher against a small real HTTP server on 127.0.0.1: retries on 5xx / no
answer, per-event rejections dropped, refused batches split, exactly once throughout."""
import json
import random
import time

import pytest
import requests

from edge_agent.outbox import Outbox
from edge_agent.publisher import Backoff, Publisher
from tests.unit.test_edge_helpers import IngestPeer


def ev(i, label="neutral"):
    return {"ts": 1700000000 + i, "camera": "cam0", "track": f"t{i % 3}", "label": label, "confidence": 0.8, "n": i}


@pytest.fixture
def peer():
    p = IngestPeer()
    yield p
    p.close()


def make(tmp_path, url, **kw):
    box = Outbox(tmp_path / "o.sqlite3", synchronous="NORMAL")
    pub = Publisher(box, requests.Session(), f"{url}/api/v1/ingest/", backoff_base_s=0.01, backoff_max_s=0.05,
                    timeout_s=2, **kw)
    return box, pub


def test_backoff_grows_with_jitter_and_is_capped():
    b = Backoff(1.0, 8.0, random.Random(1))
    delays = [b.next_delay() for _ in range(6)]
    for n, d in enumerate(delays):
        ceiling = min(8.0, 2 ** n)
        assert ceiling / 2 <= d <= ceiling
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next_delay() <= 1.0


def test_all_events_arrive_once(tmp_path, peer):
    box, pub = make(tmp_path, peer.url, batch_size=7)
    box.put_many([ev(i) for i in range(50)])
    assert pub.drain(10)
    assert sorted(e["n"] for e in peer.events) == list(range(50))
    assert box.depth() == 0 and box.counter("accepted") == 50


def test_server_errors_are_retried_with_the_same_batch_id(tmp_path, peer):
    box, pub = make(tmp_path, peer.url, batch_size=10)
    box.put_many([ev(i) for i in range(10)])
    peer.mode = "500"
    delay = pub.send_once()
    assert delay > 0 and box.depth() == 10 and "500" in pub.last_error
    first_id = json.loads(peer.peer.requests[-1][3])["batch_id"]
    peer.mode = "ok"
    assert pub.drain(5)
    assert json.loads(peer.peer.requests[-1][3])["batch_id"] == first_id
    assert len(peer.events) == 10


def test_no_answer_is_retried(tmp_path):
    box, pub = make(tmp_path, "http://127.0.0.1:9")  # nothing listens on the discard port
    box.put(ev(0))
    assert pub.send_once() > 0 and box.depth() == 1 and "no answer" in pub.last_error


def test_lost_answer_then_resend_is_acknowledged_as_duplicate(tmp_path, peer):
    box, pub = make(tmp_path, peer.url)
    box.put_many([ev(i) for i in range(5)])
    bid, rows = box.next_batch(200)
    # The server got it but the agent crashed before reading the answer:
    requests.post(f"{peer.url}/api/v1/ingest/", data='{"batch_id":"%s","events":[%s]}' % (bid, ",".join(b for _, b in rows)))
    assert pub.drain(5)
    assert pub.duplicates == 1 and len(peer.events) == 5


def test_rejected_events_are_dropped_with_a_log_line(tmp_path, peer, caplog):
    peer.reject = lambda e: "unknown label 'sadish'" if e["label"] == "sadish" else None
    box, pub = make(tmp_path, peer.url)
    box.put_many([ev(0), ev(1, "sadish"), ev(2)])
    assert pub.drain(5)
    assert [e["n"] for e in peer.events] == [0, 2]
    assert box.depth() == 0 and box.counter("rejected") == 1
    assert any("sadish" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)


def test_a_refused_batch_is_split_until_the_bad_event_is_alone(tmp_path):
    got = []

    def handler(method, path, headers, body):
        data = json.loads(body)
        if any(e["label"] == "bad" for e in data["events"]):
            return 400, {}, {"detail": "malformed event"}
        got.extend(data["events"])
        return 200, {}, {"batch_id": data["batch_id"], "accepted": len(data["events"]), "rejected": [],
                         "duplicate": False}

    from tests.unit.test_edge_helpers import Peer

    p = Peer(handler)
    try:
        box, pub = make(tmp_path, p.url, batch_size=16)
        box.put_many([ev(i, "bad" if i == 11 else "neutral") for i in range(16)])
        assert pub.drain(10)
        assert sorted(e["n"] for e in got) == [i for i in range(16) if i != 11]
        assert box.counter("rejected") == 1
    finally:
        p.close()


def test_rate_limit_honours_retry_after(tmp_path, peer):
    box, pub = make(tmp_path, peer.url)
    box.put(ev(0))
    peer.mode = "429"
    assert pub.send_once() >= 0.2
    peer.mode = "ok"
    assert pub.drain(5) and len(peer.events) == 1


def test_revoked_token_keeps_events(tmp_path, peer):
    box, pub = make(tmp_path, peer.url)
    box.put(ev(0))
    peer.mode = "401"
    assert pub.send_once() > 0 and box.depth() == 1 and "token" in pub.last_error


def test_background_thread_delivers_through_an_outage(tmp_path, peer):
    box, pub = make(tmp_path, peer.url, batch_size=5)
    pub.start()
    try:
        peer.mode = "500"
        for i in range(20):
            box.put(ev(i))
        time.sleep(0.3)
        assert len(peer.events) == 0
        peer.mode = "ok"
        deadline = time.monotonic() + 10
        while box.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pub.stop()
    assert sorted(e["n"] for e in peer.events) == list(range(20))


def test_linger_gathers_events_into_few_requests(tmp_path, peer):
    box, pub = make(tmp_path, peer.url, linger_s=0.3)
    pub.start()
    try:
        time.sleep(0.2)
        for i in range(10):
            box.put(ev(i))
            time.sleep(0.02)
        deadline = time.monotonic() + 5
        while box.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pub.stop()
    assert sorted(e["n"] for e in peer.events) == list(range(10))
    assert len(peer.batches) <= 2


def test_a_200_that_is_not_an_acknowledgement_keeps_the_batch(tmp_path):
    from tests.unit.test_edge_helpers import Peer

    p = Peer(lambda m, path, h, b: (200, {"Content-Type": "text/html"}, b"<html>Welcome to the guest Wi-Fi</html>"))
    try:
        box, pub = make(tmp_path, p.url)
        box.put(ev(0))
        assert pub.send_once() > 0
        assert box.depth() == 1 and "without acknowledging" in pub.last_error
    finally:
        p.close()


def _poison_peer(bad_label, stored):
    """An ingest server with a bug: a 500 for any batch holding a `bad_label` event."""
    from tests.unit.test_edge_helpers import Peer

    def handler(method, path, headers, body):
        data = json.loads(body)
        if any(e["label"] == bad_label for e in data["events"]):
            return 500, {}, {"detail": "internal error"}
        stored.extend(data["events"])
        return 200, {}, {"batch_id": data["batch_id"], "accepted": len(data["events"]), "rejected": [],
                         "duplicate": False}

    return Peer(handler)


@pytest.mark.parametrize("order", [["good", "bad", "good"], ["bad", "good", "good"], ["good", "good", "bad"]])
def test_a_poison_event_is_set_aside_and_the_others_get_through(tmp_path, order):
    stored = []
    p = _poison_peer("bad", stored)
    try:
        box, pub = make(tmp_path, p.url, batch_size=16)
        box.put_many([ev(i, label) for i, label in enumerate(order)])
        assert pub.drain(20)
        box.put(ev(9, "good"))  # later traffic: a suspect is confirmed only once others get through
        assert pub.drain(20)
        assert sorted(e["n"] for e in stored) == [i for i, label in enumerate(order) if label == "good"] + [9]
        assert box.depth() == 0 and box.set_aside_count() == 1
        assert box.restore() == 1 and box.depth() == 1  # kept, and can be put back in line
    finally:
        p.close()


def test_a_failing_server_sets_nothing_aside_for_good(tmp_path, peer):
    box, pub = make(tmp_path, peer.url, batch_size=4)
    box.put_many([ev(i) for i in range(4)])
    peer.mode = "500"
    for _ in range(40):
        pub.send_once()
    assert box.depth() + box.set_aside_count() == 4 and box.set_aside_count() <= 1
    peer.mode = "ok"
    assert pub.drain(10) and box.restore() <= 1 and pub.drain(10)
    assert sorted(e["n"] for e in peer.events) == [0, 1, 2, 3]


def test_big_batches_travel_gzip_and_small_ones_plain(tmp_path, peer):
    box, pub = make(tmp_path, peer.url, batch_size=200)
    box.put_many([ev(i) for i in range(200)])
    assert pub.drain(5)
    box.put(ev(500))
    assert pub.drain(5)
    (_, _, big, _), (_, _, small, _) = peer.peer.requests[-2:]
    assert big.get("content-encoding") == "gzip" and "content-encoding" not in small
    assert sorted(e["n"] for e in peer.events) == [*range(200), 500]
