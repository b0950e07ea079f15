from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .models import EmotionEvent, IngestBatch, RollupTrack


@shared_task
def purge_expired_events():
    """Raw events older than the retention go; minute rollups stay."""
    cutoff = timezone.now() - timezone.timedelta(days=settings.AFFECTWATCH["EVENT_RETENTION_DAYS"])
    events, _ = EmotionEvent.objects.filter(ts__lt=cutoff).delete()
    RollupTrack.objects.filter(minute__lt=cutoff).delete()
    IngestBatch.objects.filter(received_at__lt=cutoff).delete()
    return events
