from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .models import EmotionEvent, IngestBatch, RawMinute, RollupTrack
from .release import release_due


@shared_task
def release_minutes():
    """Every 20 s (beat): noise and publish every device's closed minutes."""
    return release_due()


@shared_task
def purge_expired_events():
    """Raw events, track tallies and raw cells older than the retention go; the released
    (noisy) minute rollups stay."""
    cutoff = timezone.now() - timezone.timedelta(days=settings.AFFECTWATCH["EVENT_RETENTION_DAYS"])
    events, _ = EmotionEvent.objects.filter(ts__lt=cutoff).delete()
    RollupTrack.objects.filter(minute__lt=cutoff).delete()
    RawMinute.objects.filter(minute__lt=cutoff).delete()
    IngestBatch.objects.filter(received_at__lt=cutoff).delete()
    return events
