"""Store-and-forward: every event is committed to a local SQLite outbox before anything
tries to send it.

Exactly-once delivery across crashes rests on one rule: a batch's membership and its
`batch_id` are committed *before* the batch is sent, and a batch is deleted only after
the server acknowledged it. After a crash or restart the publisher resends the same
events under the same `batch_id`, which the server recognises as a duplicate. Events
the server never saw can be regrouped freely (`release`), because no id was used for them.

The outbox has a disk budget: when its pages exceed it, the oldest events are dropped
and counted (`dropped`), a number that survives restarts and goes into heartbeats.
Events the server keeps failing on (a poison event: 5xx every time, while others get
through) are moved to `set_aside`, kept for inspection, and counted in heartbeats too.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    batch_id TEXT
);
CREATE INDEX IF NOT EXISTS events_batch ON events (batch_id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS set_aside (id INTEGER PRIMARY KEY, body TEXT NOT NULL, reason TEXT NOT NULL,
                                      confirmed INTEGER NOT NULL DEFAULT 1);
"""


class Outbox:
    def __init__(self, path: str | Path, max_mb: float = 256.0, synchronous: str = "FULL"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_mb * 1024 * 1024)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed event survives power loss too, not only a crash of the agent.
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(SCHEMA)
        self.changed = threading.Event()  # set whenever events arrive; the publisher waits on it
        self._page_size = self._db.execute("PRAGMA page_size").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # Writing ------------------------------------------------------------------------------
    def put(self, event: dict) -> None:
        self.put_many([event])

    def put_many(self, events: list[dict]) -> None:
        if not events:
            return
        rows = [(json.dumps(e, separators=(",", ":"), ensure_ascii=False),) for e in events]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO events (body) VALUES (?)", rows)
                self._enforce_budget()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self.changed.set()

    def used_bytes(self) -> int:
        with self._lock:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self._page_size

    def _enforce_budget(self) -> None:
        for _ in range(20):
            used = self.used_bytes()
            if used <= self.max_bytes:
                return
            count = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            if count <= 1:
                return
            # Drop a little more than the overshoot so that this does not run on every insert.
            share = (used - self.max_bytes) / used + 0.02
            n = max(1, min(count - 1, int(count * share) + 1))
            self._db.execute("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?)", (n,))
            self._bump("dropped", n)
            log.warning("outbox over its %.1f MB budget: dropped the %d oldest event(s)", self.max_bytes / 2**20, n)

    def _bump(self, name: str, n: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, n))

    # Sending ------------------------------------------------------------------------------
    def next_batch(self, limit: int) -> tuple[str, list[tuple[int, str]]] | None:
        """The batch to send now: the oldest one already formed (unacknowledged, perhaps
        sent before a crash) with its original id, else a new one of up to `limit` events."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT batch_id FROM events WHERE batch_id IS NOT NULL ORDER BY id LIMIT 1").fetchone()
                if row:
                    batch_id = row[0]
                else:
                    ids = [r[0] for r in self._db.execute(
                        "SELECT id FROM events WHERE batch_id IS NULL ORDER BY id LIMIT ?", (limit,))]
                    if not ids:
                        self._db.execute("COMMIT")
                        return None
                    batch_id = str(uuid.uuid4())
                    self._db.execute(
                        "UPDATE events SET batch_id = ? WHERE id BETWEEN ? AND ? AND batch_id IS NULL",
                        (batch_id, ids[0], ids[-1]))
                rows = self._db.execute(
                    "SELECT id, body FROM events WHERE batch_id = ? ORDER BY id", (batch_id,)).fetchall()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return batch_id, rows

    def ack(self, batch_id: str, accepted: int = 0, rejected: int = 0) -> int:
        """The server has the batch: forget it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            n = self._db.execute("DELETE FROM events WHERE batch_id = ?", (batch_id,)).rowcount
            if accepted:
                self._bump("accepted", accepted)
            if rejected:
                self._bump("rejected", rejected)
            self._db.execute("COMMIT")
        return n

    def release(self, batch_id: str) -> None:
        """The server stored nothing of this batch (it refused it whole): regroup its events."""
        with self._lock:
            self._db.execute("UPDATE events SET batch_id = NULL WHERE batch_id = ?", (batch_id,))

    def set_aside(self, batch_id: str, reason: str, confirmed: bool = True) -> None:
        """Moves a batch's events out of the sending queue, keeping them (and their order
        ids) for inspection or `restore`. Unconfirmed: on trial, not counted yet."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO set_aside (id, body, reason, confirmed) SELECT id, body, ?, ? FROM events "
                             "WHERE batch_id = ?", (reason[:300], int(confirmed), batch_id))
            self._db.execute("DELETE FROM events WHERE batch_id = ?", (batch_id,))
            self._db.execute("COMMIT")

    def restore(self, unconfirmed_only: bool = False) -> int:
        """Puts set-aside events (all, or those on trial) back in the queue, in their old place."""
        where = "WHERE confirmed = 0" if unconfirmed_only else ""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            n = self._db.execute(f"INSERT INTO events (id, body) SELECT id, body FROM set_aside {where}").rowcount
            self._db.execute(f"DELETE FROM set_aside {where}")
            self._db.execute("COMMIT")
        if n:
            self.changed.set()
        return n

    def set_aside_count(self) -> int:
        """Events set aside for good (the heartbeat's `set_aside`)."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM set_aside WHERE confirmed = 1").fetchone()[0]

    # Reporting ----------------------------------------------------------------------------
    def depth(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def counter(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    @property
    def dropped(self) -> int:
        return self.counter("dropped")
