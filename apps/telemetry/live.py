"""Fan-out of fresh rollups to dashboards over the Channels layer.

The release step (`release.py`) announces which minutes of a site it published (no
query, a few bytes); each open dashboard gathers the announcements for a moment and then
reads those minutes once (`SiteTrendConsumer`). Announcements follow the release
schedule, never the arrival of a batch: when a push comes must not tell that someone
was seen."""
import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import metrics

log = logging.getLogger(__name__)

#: Seconds a dashboard gathers announcements before it reads and pushes.
PUSH_INTERVAL = 0.25


def site_group(site_id) -> str:
    return f"site.{site_id}"


def publish_minutes(site_id: int, first, last):
    """Announces that a site's minutes first..last (datetimes, inclusive) were released.
    Never raises: a failed announcement is logged and counted
    (`affectwatch_live_announcements_total{outcome="failed"}`). `released` (Unix seconds)
    lets the consumer measure the push lag."""
    message = {"type": "minutes.touched", "first": first.timestamp(), "last": last.timestamp(),
               "released": time.time()}
    try:
        _group_send(site_group(site_id), message)
    except Exception:  # the data is stored; a dashboard that misses a push catches up on reload
        log.exception("live fan-out to site %s failed", site_id)
        metrics.ANNOUNCEMENTS.labels("failed").inc()
    else:
        metrics.ANNOUNCEMENTS.labels("sent").inc()


def _group_send(group: str, message: dict) -> None:
    send = async_to_sync(get_channel_layer().group_send)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case: a Celery worker or a management command
        send(group, message)
        return
    # Synchronous code under a running event loop (a notebook, a browser test's driver),
    # where async_to_sync refuses to run: send from a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(send, group, message).result()
