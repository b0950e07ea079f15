import asyncio
import logging
import time
from datetime import datetime, timedelta, timezone

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts.access import visible_sites
from apps.telemetry import metrics
from apps.telemetry.live import PUSH_INTERVAL, site_group
from apps.telemetry.trends import trend

log = logging.getLogger(__name__)


class SiteTrendConsumer(AsyncJsonWebsocketConsumer):
    """Pushes a site's fresh minute buckets to its dashboard, at most once per
    PUSH_INTERVAL however many batches arrive."""

    pending = None  # [first, last] Unix seconds of the minutes announced since the last push
    released = None  # Unix seconds of the earliest of those announcements
    flusher = None

    async def connect(self):
        user = self.scope.get("user")
        site_id = self.scope["url_route"]["kwargs"]["site_id"]
        self.site = await self._visible_site(user, site_id) if user and user.is_authenticated else None
        if self.site is None:
            await self.close(code=4403)
            return
        self.group = site_group(site_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if self.flusher:
            self.flusher.cancel()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def minutes_touched(self, event):
        if self.pending is None:
            self.pending = [event["first"], event["last"]]
            self.released = event.get("released")
            self.flusher = asyncio.create_task(self._push_later())
        else:
            self.pending = [min(self.pending[0], event["first"]), max(self.pending[1], event["last"])]

    async def _push_later(self):
        await asyncio.sleep(PUSH_INTERVAL)
        first, last = self.pending
        released, self.pending = self.released, None
        try:
            series = await self._read(first, last)
        except Exception:  # the dashboard catches up with the next push or a reload
            log.exception("reading minutes for the live push of site %s failed", self.site.pk)
            return
        await self.send_json({"type": "trend", "series": series})
        now = time.time()
        metrics.PUSH_AGE.observe(now - last - 60)  # from the end of the newest minute pushed
        if released is not None:
            metrics.PUSH_LAG.observe(now - released)

    @database_sync_to_async
    def _read(self, first, last):
        since = datetime.fromtimestamp(first, timezone.utc)
        return trend(self.site, since, datetime.fromtimestamp(last, timezone.utc) + timedelta(minutes=1), bucket="minute")

    @database_sync_to_async
    def _visible_site(self, user, site_id):
        return visible_sites(user).filter(pk=site_id).first()
