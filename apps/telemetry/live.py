"""Fan-out of fresh rollups to dashboards over the Channels layer.

Ingest only announces which minutes of a site changed (no query, a few bytes); each
open dashboard gathers the announcements for a moment and then reads those minutes once
(`SiteTrendConsumer`). Many batches a second cost the dashboards one query per
PUSH_INTERVAL, and cost ingest nothing when no one is watching."""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

#: Seconds a dashboard gathers announcements before it reads and pushes.
PUSH_INTERVAL = 0.25


def site_group(site_id) -> str:
    return f"site.{site_id}"


def publish_minutes(site, minutes):
    """Announces the minutes (oldest first) that a batch added to."""
    if not minutes:
        return
    message = {"type": "minutes.touched", "first": minutes[0].timestamp(), "last": minutes[-1].timestamp()}
    try:
        async_to_sync(get_channel_layer().group_send)(site_group(site.id), message)
    except Exception:  # the data is stored; a dashboard that misses a push catches up on reload
        log.exception("live fan-out to site %s failed", site.id)
