"""The SQLite outbox: stable batches, acknowledgement, regrouping, the disk budget."""
import sqlite3

from edge_agent.outbox import Outbox


def ev(i):
    return {"ts": 1700000000 + i, "camera": "cam0", "track": "t1", "label": "neutral", "confidence": 0.9, "i": i}


def test_batches_are_stable_until_acknowledged(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    box.put_many([ev(i) for i in range(5)])
    bid, rows = box.next_batch(3)
    assert len(rows) == 3
    # Not acknowledged (sent, answer lost): the same batch, same id, comes again…
    assert box.next_batch(3) == (bid, rows)
    # …even from another process after a crash.
    box.close()
    box = Outbox(tmp_path / "o.sqlite3")
    assert box.next_batch(100) == (bid, rows)
    assert box.ack(bid, accepted=3) == 3
    bid2, rows2 = box.next_batch(100)
    assert bid2 != bid and [r[0] for r in rows2] == [4, 5]
    assert box.depth() == 2 and box.counter("accepted") == 3


def test_released_batch_is_regrouped(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    box.put_many([ev(i) for i in range(4)])
    bid, rows = box.next_batch(4)
    box.release(bid)
    bid2, rows2 = box.next_batch(2)
    assert bid2 != bid and len(rows2) == 2


def test_wal_mode(tmp_path):
    Outbox(tmp_path / "o.sqlite3").put(ev(0))
    mode = sqlite3.connect(tmp_path / "o.sqlite3").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_disk_budget_drops_the_oldest_and_counts_them(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", max_mb=0.1)
    for chunk in range(30):
        box.put_many([ev(chunk * 100 + i) for i in range(100)])
    assert box.used_bytes() <= 0.1 * 2**20
    kept = box.depth()
    assert 0 < kept < 3000
    assert box.dropped == 3000 - kept
    # The newest survive.
    _, rows = box.next_batch(100000)
    assert '"i":2999' in rows[-1][1]
    box.close()
    assert Outbox(tmp_path / "o.sqlite3").dropped == 3000 - kept  # survives restarts
