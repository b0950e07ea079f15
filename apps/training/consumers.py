import asyncio

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts.access import organisation_of, role_of
from apps.datasets.access import RESEARCH_ROLES

POLL_S = 1.0


def job_state(job) -> dict:
    return {
        "id": job.pk, "status": job.status, "progress": job.progress, "error": job.error, "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "model_version": job.model_version.version if job.model_version_id else None,
        "model_version_id": job.model_version_id, "updated_at": job.updated_at.isoformat(),
        "history_len": len(job.history),
    }


class JobProgressConsumer(AsyncJsonWebsocketConsumer):
    """Live progress of one fine-tune job. Pushes from the worker arrive through the
    channel layer when it is shared (Redis); the row is also polled every second, so the
    page stays live with the in-memory layer, where the worker cannot reach us."""

    async def connect(self):
        from .jobs import job_group

        user = self.scope.get("user")
        self.job_id = self.scope["url_route"]["kwargs"]["job_id"]
        if not user or not user.is_authenticated or not await self._may_see(user):
            await self.close(code=4403)
            return
        self.group = job_group(self.job_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.last = None
        self.poller = asyncio.create_task(self._poll())

    async def disconnect(self, code):
        if hasattr(self, "poller"):
            self.poller.cancel()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_update(self, event):
        await self._send_state()

    async def _poll(self):
        try:
            while True:
                await self._send_state()
                await asyncio.sleep(POLL_S)
        except asyncio.CancelledError:
            pass

    async def _send_state(self):
        state = await self._state()
        if state is None:
            return
        if state != self.last:
            since = self.last["history_len"] if self.last and self.last["history_len"] <= state["history_len"] else 0
            history = await self._history(since)
            self.last = state
            await self.send_json({"type": "job", "job": state, "history_from": since, "history": history})

    @database_sync_to_async
    def _state(self):
        from .jobs import reap_if_stale
        from .models import FineTuneJob

        job = FineTuneJob.objects.select_related("model_version").filter(pk=self.job_id).first()
        return job_state(reap_if_stale(job)) if job else None

    @database_sync_to_async
    def _history(self, since):
        from .models import FineTuneJob

        history = FineTuneJob.objects.filter(pk=self.job_id).values_list("history", flat=True).first() or []
        return history[since:] if since <= len(history) else history

    @database_sync_to_async
    def _may_see(self, user):
        from .models import FineTuneJob

        if role_of(user) not in RESEARCH_ROLES:
            return False
        return FineTuneJob.objects.filter(pk=self.job_id, organisation=organisation_of(user)).exists()
