"""The telemetry path's Prometheus instruments, written by every web and worker process
(prometheus-client's multiprocess mode; `apps/monitoring` serves the sums at /metrics).

Labels are bounded: rejection reasons are codes (`ingest.EventValidator`), never the
sentence sent back to the board."""
from prometheus_client import Counter, Histogram

EVENTS_ACCEPTED = Counter("affectwatch_ingest_events", "Events accepted by ingest (duplicates of a retried batch not counted).")
EVENTS_REJECTED = Counter("affectwatch_ingest_rejected_events", "Events rejected by ingest, by reason.", ["reason"])
BATCHES = Counter("affectwatch_ingest_batches", "Ingest batches answered, by outcome.", ["outcome"])
BATCH_SECONDS = Histogram("affectwatch_ingest_batch_seconds", "Seconds to validate and store one batch.",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
#: Live pushes (`live.publish_minutes` → `dashboards.consumers`). The lag runs from the
#: release announcing a minute to the push leaving a web process for one dashboard: the
#: Channels layer (Redis), the consumer's gathering (PUSH_INTERVAL) and its read. The age
#: runs from the end of the newest minute pushed, so it adds the release delay
#: (RELEASE_DELAY, 90 s by default) and how late beat and the worker are.
ANNOUNCEMENTS = Counter("affectwatch_live_announcements", "Release announcements sent to the Channels layer, by outcome.",
                        ["outcome"])
PUSH_LAG = Histogram("affectwatch_live_push_lag_seconds",
                     "Seconds from a release's announcement to its live push to one dashboard.",
                     buckets=(0.05, 0.1, 0.25, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0))
PUSH_AGE = Histogram("affectwatch_live_push_age_seconds",
                     "Seconds from the end of the newest minute in a live push to the push.",
                     buckets=(60, 90, 100, 120, 150, 180, 240, 300, 600, 1800, 3600))

#: Every label value a counter above can take (the codes of `ingest.Rejection`), written
#: at 0 when a process starts, so each series exists from the first scrape and rate()
#: sees its first increase.
LABEL_VALUES = {
    EVENTS_REJECTED: ("not_an_object", "missing_field", "unknown_label", "bad_confidence", "bad_timestamp",
                      "future", "too_old", "bad_track", "unknown_camera"),
    BATCHES: ("stored", "duplicate", "malformed", "rate_limited", "busy", "removed"),
    ANNOUNCEMENTS: ("sent", "failed"),
}
for _counter, _values in LABEL_VALUES.items():
    for _value in _values:
        _counter.labels(_value)
