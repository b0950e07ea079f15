from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .models import Device


@shared_task
def mark_offline_devices():
    """Devices silent for longer than OFFLINE_AFTER are shown offline."""
    cutoff = timezone.now() - settings.AFFECTWATCH["OFFLINE_AFTER"]
    return Device.objects.filter(online=True, last_seen_at__lt=cutoff).update(online=False)
