"""Deleting a device, a camera or a zone waits for the device's batches in flight and
holds them off until it commits (`rollups.lock_device`): the raw events table has no
database foreign keys, so this lock is what keeps an event from naming a removed row.
Django's cascade (CASCADE, SET_NULL) then reaches every stored event.

This holds because Django sends every pre_delete signal before it deletes or updates
any row, and removes the events with one bulk statement after them: EmotionEvent has no
delete signal receivers of its own (a test keeps it so: with one, Django would read the
events before these locks are taken)."""
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from apps.sites.models import Camera, Device, Zone

from .rollups import lock_device


@receiver(pre_delete, sender=Device, dispatch_uid="telemetry.lock-deleted-device")
def device_deleted(sender, instance, **kwargs):
    lock_device(instance.pk)


@receiver(pre_delete, sender=Camera, dispatch_uid="telemetry.lock-deleted-camera")
def camera_deleted(sender, instance, **kwargs):
    lock_device(instance.device_id)


@receiver(pre_delete, sender=Zone, dispatch_uid="telemetry.lock-deleted-zone")
def zone_deleted(sender, instance, **kwargs):
    # Every board of the site, not only the zone's: one may be moved into it meanwhile.
    for device_id in Device.objects.filter(site_id=instance.site_id).order_by("pk").values_list("pk", flat=True):
        lock_device(device_id)
