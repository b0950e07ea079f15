from django.db.models.signals import post_save
from django.dispatch import receiver

from apps.datasets.services import consent_withdrawn
from apps.sites.models import Device


@receiver(post_save, sender=Device, dispatch_uid="training.rollout-on-heartbeat")
def device_saved(sender, instance, update_fields=None, **kwargs):
    # Heartbeats save model_version; our own desired_* updates must not recurse.
    if update_fields is not None and "model_version" not in update_fields:
        return
    from .rollout import on_heartbeat

    on_heartbeat(instance)


@receiver(consent_withdrawn, dispatch_uid="training.forget-withdrawn-subject")
def subject_withdrawn(sender, subject, **kwargs):
    from .withdrawal import forget_subject

    return forget_subject(subject)
