"""Fan-out of fresh rollups to dashboards over the Channels layer."""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from .trends import trend

log = logging.getLogger(__name__)


def site_group(site_id) -> str:
    return f"site.{site_id}"


def publish_minutes(site, minutes):
    """Sends the site-level minute buckets that a batch touched."""
    if not minutes:
        return
    from datetime import timedelta

    series = trend(site, minutes[0], minutes[-1] + timedelta(minutes=1), bucket="minute")
    try:
        async_to_sync(get_channel_layer().group_send)(site_group(site.id), {"type": "trend.update", "series": series})
    except Exception:  # the data is stored; a dashboard that misses a push catches up on reload
        log.exception("live fan-out to site %s failed", site.id)
