"""The publisher: drains the outbox to `POST /api/v1/ingest/`.

- 200: the batch is stored (or was already: `duplicate`); events the server rejected
  come back with reasons, are logged and counted, and are not retried.
- a whole batch refused with 400 / 413 / 422 (too large, malformed): the server stored
  none of it, so the batch is split in halves under new ids until the event at fault is
  alone, which is then dropped with a log line; the others get through.
- 5xx, 429, 401/403 or no answer: the same batch is retried later with the same id,
  with exponential backoff and jitter (429 honours `Retry-After`).
- a batch answered 5xx POISON_ATTEMPTS times in a row is split in halves the same way;
  an event alone that still fails is set aside on trial so the events behind it get
  through. If the very next attempt fails as well, the server is down rather than the
  event bad: the event goes back in line and the publisher simply retries. If the next
  one succeeds, the suspect is tried once more, alone; failing again while others get
  through, it is set aside for good (kept in the outbox, counted in the heartbeat). The
  agent puts set-aside events back in line when it starts (a fixed server may take them).
"""
from __future__ import annotations

import gzip
import json
import logging
import random
import threading
import time

import requests

from .outbox import Outbox

log = logging.getLogger(__name__)

SPLIT_STATUSES = (400, 413, 422)
#: Bodies from this size on are sent gzip-compressed (`Content-Encoding: gzip`).
GZIP_FROM_BYTES = 1024
#: With a backlog of two batches or more, batches grow this much (at most BACKLOG_BATCH_MAX events).
BACKLOG_GROWTH, BACKLOG_BATCH_MAX = 5, 2000
#: Consecutive 5xx answers to one batch before it is split (or, alone, set aside).
POISON_ATTEMPTS = 3


class Backoff:
    def __init__(self, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None):
        self.base, self.cap = base, cap
        self.failures = 0
        self.rng = rng or random.Random()

    def next_delay(self) -> float:
        """Exponential with jitter: uniformly between half and all of base·2ⁿ (capped), so
        that boards coming back after an outage do not all hit the server at once."""
        ceiling = min(self.cap, self.base * (2 ** self.failures))
        self.failures += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


class Publisher:
    def __init__(self, outbox: Outbox, session: requests.Session, url: str, batch_size: int = 200,
                 backoff_base_s: float = 1.0, backoff_max_s: float = 60.0, timeout_s: float = 10.0,
                 ready: threading.Event | None = None, linger_s: float = 0.0, gzip: bool = True):
        self.outbox = outbox
        self.session = session
        self.url = url
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        # After an idle spell, wait this long for more events before sending: a board then
        # makes about one request per `linger_s` instead of one per event.
        self.linger_s = linger_s
        self.gzip = gzip  # a 200-event batch shrinks from 21 kB to 1.7 kB (docs/edge-protocol.md)
        self.backoff = Backoff(backoff_base_s, backoff_max_s)
        # Sending waits for `ready`: the server rejects events from cameras that no
        # heartbeat announced yet, so the agent opens the gate after its first heartbeat.
        self.ready = ready or threading.Event()
        if ready is None:
            self.ready.set()
        self._limit = batch_size  # shrinks while a refused batch is being split
        self._failing: tuple[str, int] = ("", 0)  # (batch id, consecutive 5xx answers)
        # A poison suspect: None, "aside" (set aside on trial; nothing succeeded since) or
        # "retrial" (back in line after others went through; failing alone again confirms it).
        self._suspect: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.last_success: float | None = None
        self.sent_batches = 0
        self.accepted = 0
        self.rejected = 0
        self.duplicates = 0
        self.throttled = 0  # 429 answers

    # Lifecycle ------------------------------------------------------------------------------
    def start(self) -> "Publisher":
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.outbox.changed.set()
        self.ready.set()
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.ready.wait(0.5):
                continue
            self.outbox.changed.clear()
            try:
                delay = self.send_once()
            except Exception:  # noqa: BLE001 - the publisher must outlive any surprise
                log.exception("publisher: unexpected error")
                delay = self.backoff.next_delay()
            if delay is None:  # nothing to send: sleep until something arrives, then gather
                if self.outbox.changed.wait(1.0) and self.linger_s:
                    self._stop.wait(self.linger_s)
            elif delay > 0:
                self._stop.wait(delay)

    def drain(self, timeout: float = 30.0) -> bool:
        """Send synchronously until the outbox is empty (used by `simulate` and tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            delay = self.send_once(gather=False)
            if delay is None:
                return True
            if delay > 0:
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        return self.outbox.depth() == 0

    # One attempt ----------------------------------------------------------------------------
    def send_once(self, gather: bool = True) -> float | None:
        """Send one batch. Returns None when the outbox is empty, else the seconds to wait
        before the next attempt (0: go on at once; `linger_s` after a batch that was not
        full, unless `gather` is off)."""
        limit = self._limit
        if limit == self.batch_size and self.outbox.depth() >= 2 * self.batch_size:
            limit = min(BACKLOG_BATCH_MAX, self.batch_size * BACKLOG_GROWTH)  # drain a backlog in big batches
        batch = self.outbox.next_batch(limit)
        if batch is None:
            return None
        batch_id, rows = batch
        # The stored bodies are already JSON: splice them rather than parse and re-encode.
        body = ('{"batch_id":"%s","events":[%s]}' % (batch_id, ",".join(b for _, b in rows))).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.gzip and len(body) >= GZIP_FROM_BYTES:
            body, headers["Content-Encoding"] = gzip.compress(body, compresslevel=6), "gzip"
        try:
            r = self.session.post(self.url, data=body, timeout=self.timeout_s, headers=headers)
        except requests.RequestException as exc:
            return self._retry(f"no answer from {self.url}: {type(exc).__name__}")
        status = r.status_code
        if status == 200:
            retry = self._accepted(batch_id, rows, r)
            if retry or not gather or len(rows) >= limit or self._limit < self.batch_size:
                return retry
            # A batch that was not full: gather for `linger_s` before the next request, so a
            # steady stream goes up in about one request per `linger_s`, not one per event.
            return self.linger_s
        detail = _detail(r)
        if status in SPLIT_STATUSES:
            if len(rows) > 1:
                self.outbox.release(batch_id)
                self._limit = max(1, len(rows) // 2)
                log.warning("ingest refused a batch of %d (%d: %s); splitting it", len(rows), status, detail)
                return 0.0
            log.error("ingest refused event %s (%d: %s); dropped", rows[0][1], status, detail)
            self.outbox.ack(batch_id, rejected=1)
            self.rejected += 1
            return 0.0
        if status == 429:
            self.throttled += 1
            retry_after = _retry_after(r)
            self.last_error = f"rate limited (429); retrying in {retry_after or 'a while'} s"
            log.warning("ingest: %s", self.last_error)
            delay = self.backoff.next_delay()
            return max(retry_after or 0.0, delay)
        if status in (401, 403):
            return self._retry(f"the server refuses this device's token ({status}: {detail}); "
                               "re-enroll the board if it was revoked")
        if status >= 500:
            return self._server_error(batch_id, rows, f"ingest answered {status}: {detail}")
        # 404 / 405 and the like: a misconfigured URL, not bad events. Keep them.
        return self._retry(f"ingest answered {status}: {detail}")

    def _server_error(self, batch_id: str, rows, message: str) -> float:
        """A 5xx: retry; after POISON_ATTEMPTS on this batch, split it or set its one event aside."""
        if self._suspect == "aside":  # the next event fails too: the server is down, not the event
            n = self.outbox.restore(unconfirmed_only=True)
            self._suspect = None
            self.outbox.release(batch_id)
            log.warning("%s for the next event too: the server is failing, not the event; "
                        "%d set-aside event(s) back in line", message, n)
            return self._retry(message)
        same, count = self._failing
        count = count + 1 if same == batch_id else 1
        self._failing = (batch_id, count)
        if count < POISON_ATTEMPTS:
            return self._retry(message)
        self._failing = ("", 0)
        if len(rows) > 1:
            self.outbox.release(batch_id)
            self._limit = max(1, len(rows) // 2)
            log.warning("%s, %d times for a batch of %d; splitting it", message, POISON_ATTEMPTS, len(rows))
            return 0.0
        confirmed = self._suspect == "retrial"  # failed alone again after others got through
        self.outbox.set_aside(batch_id, message, confirmed=confirmed)
        self._suspect = None if confirmed else "aside"
        log.error("event %s set aside%s after %d failures (%s); sending the ones behind it", rows[0][1],
                  " for good" if confirmed else " on trial", POISON_ATTEMPTS, message)
        return 0.0

    def _accepted(self, batch_id: str, rows, r: requests.Response) -> float:
        try:
            data = r.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or str(data.get("batch_id")) != batch_id:
            # A 200 that is not the ingest API's answer (a captive portal, a misrouted proxy)
            # proves nothing was stored: keep the batch.
            return self._retry(f"ingest answered 200 without acknowledging batch {batch_id}: {r.text[:120]!r}")
        rejected = data.get("rejected") or []
        for item in rejected:
            try:
                idx = int(item.get("index"))
                event = rows[idx][1]
            except (TypeError, ValueError, IndexError, AttributeError):
                event = "?"
            log.warning("ingest rejected event %s: %s; dropped", event, (item or {}).get("reason", "no reason given"))
        accepted = int(data.get("accepted", len(rows) - len(rejected)) or 0)
        self.outbox.ack(batch_id, accepted=accepted, rejected=len(rejected))
        self.sent_batches += 1
        self.accepted += accepted
        self.rejected += len(rejected)
        if data.get("duplicate"):
            self.duplicates += 1
            log.info("batch %s was already stored (resent after a restart or a lost answer)", batch_id)
        self.backoff.reset()
        self.last_error = None
        self.last_success = time.time()
        if self._limit < self.batch_size:
            self._limit = min(self.batch_size, self._limit * 2)
        if self._suspect == "aside":  # others get through: try the suspect once more, alone
            self.outbox.restore(unconfirmed_only=True)
            self._suspect, self._limit = "retrial", 1
        elif self._suspect == "retrial":  # the suspect went through: it was the server
            self._suspect = None
        return 0.0

    def _retry(self, message: str) -> float:
        delay = self.backoff.next_delay()
        if message != self.last_error:
            log.warning("publisher: %s; retrying in %.1f s", message, delay)
        self.last_error = message
        return delay


def _detail(r: requests.Response) -> str:
    try:
        data = r.json()
        if isinstance(data, dict):
            return str(data.get("detail") or json.dumps(data)[:200])
    except ValueError:
        pass
    return (r.text or r.reason or "")[:200].strip()


def _retry_after(r: requests.Response) -> float | None:
    value = r.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
