from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts.access import visible_sites
from apps.telemetry.live import site_group


class SiteTrendConsumer(AsyncJsonWebsocketConsumer):
    """Pushes a site's fresh minute buckets to its dashboard."""

    async def connect(self):
        user = self.scope.get("user")
        site_id = self.scope["url_route"]["kwargs"]["site_id"]
        if not user or not user.is_authenticated or not await self._may_see(user, site_id):
            await self.close(code=4403)
            return
        self.group = site_group(site_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def trend_update(self, event):
        await self.send_json({"type": "trend", "series": event["series"]})

    @database_sync_to_async
    def _may_see(self, user, site_id):
        return visible_sites(user).filter(pk=site_id).exists()
