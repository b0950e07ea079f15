"""What /metrics reports besides the counters the processes write: the platform's state,
read when Prometheus scrapes (boards, their outboxes, Celery queues, fine-tune jobs).

These are deployment-wide numbers across every organisation — operator data, which is
why /metrics is for the operator's scraper token and superusers only (`views.py`)."""
from __future__ import annotations

import logging

from celery import current_app
from django.conf import settings
from kombu.exceptions import ChannelError
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from apps.sites.models import Device
from apps.training.models import FineTuneJob

log = logging.getLogger(__name__)


class StateCollector:
    """Gauges computed from the database and the broker at each scrape."""

    def collect(self):
        boards = GaugeMetricFamily("affectwatch_boards", "Enrolled boards by state.", labels=["state"])
        depth = GaugeMetricFamily("affectwatch_boards_outbox_events",
                                  "Events waiting in the boards' outboxes, summed over their last heartbeats.")
        deepest = GaugeMetricFamily("affectwatch_boards_outbox_max_events",
                                    "The fullest outbox among the boards' last heartbeats, in events.")
        dropped = GaugeMetricFamily("affectwatch_boards_outbox_dropped_events",
                                    "Events the boards' outboxes dropped for want of disk, as their last heartbeats said.")
        counts = {"online": 0, "offline": 0, "revoked": 0}
        depths, drops = [], 0
        for online, revoked, health in Device.objects.values_list("online", "revoked_at", "health").iterator():
            counts["revoked" if revoked else "online" if online else "offline"] += 1
            if not revoked and isinstance(health, dict):
                depths.append(_number(health.get("queue_depth")))
                drops += _number(health.get("dropped"))
        for state, n in counts.items():
            boards.add_metric([state], n)
        depth.add_metric([], sum(depths))
        deepest.add_metric([], max(depths, default=0))
        dropped.add_metric([], drops)
        yield from (boards, depth, deepest, dropped)

        jobs = GaugeMetricFamily("affectwatch_training_jobs", "Fine-tune jobs by state.", labels=["state"])
        by_state = dict.fromkeys(FineTuneJob.Status.values, 0)
        for state in FineTuneJob.objects.values_list("status", flat=True).iterator():
            by_state[state] = by_state.get(state, 0) + 1
        for state, n in by_state.items():
            jobs.add_metric([state], n)
        yield jobs

        queues = GaugeMetricFamily("affectwatch_celery_queue_length", "Tasks waiting in a Celery queue.", labels=["queue"])
        up = GaugeMetricFamily("affectwatch_celery_broker_up", "1 when the broker answered this scrape.")
        try:
            with current_app.connection_for_read() as conn:
                channel = conn.default_channel
                for queue in QUEUES:
                    queues.add_metric([queue], _length(channel, queue))
            up.add_metric([], 1)
        except Exception as exc:  # a broker that is down is a metric, not a failed scrape
            log.warning("metrics: the Celery broker did not answer (%s)", exc)
            up.add_metric([], 0)
        yield from (queues, up)


#: The queues the workers consume (settings.CELERY_TASK_DEFAULT_QUEUE and the training route).
QUEUES = ("celery", "training")


def _length(channel, queue) -> int:
    """Messages waiting in a queue; 0 for one nobody has declared yet (no worker has started)."""
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:
        return 0


def _number(value) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else 0


def exposition() -> bytes:
    """The Prometheus text exposition: every process's counters and histograms (summed
    from the multiprocess folder, settings.METRICS_DIR) and the state gauges."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(settings.METRICS_DIR))
    registry.register(StateCollector())
    return generate_latest(registry)
