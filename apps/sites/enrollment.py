"""Creating enrollment codes, redeeming them for a device, rotating and revoking tokens."""
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.access import audit
from apps.accounts.secrets import hash_secret, new_enrollment_code, new_secret, normalize_enrollment_code

from .models import Device, EnrollmentCode

DEVICE_TOKEN_PREFIX = "awd"


class EnrollmentError(ValueError):
    pass


def create_enrollment_code(site, user=None, zone=None, request=None):
    """Returns (EnrollmentCode, the plain code — shown once)."""
    code, code_hash = new_enrollment_code()
    enrollment = EnrollmentCode.objects.create(
        site=site,
        zone=zone,
        code_hash=code_hash,
        hint=code[-4:],
        created_by=user if getattr(user, "pk", None) else None,
        expires_at=timezone.now() + settings.AFFECTWATCH["ENROLLMENT_CODE_TTL"],
    )
    audit(request or user, "enrollment_code.create", target=site, organisation=site.organisation, hint=code[-4:])
    return enrollment, code


def redeem(code, name="", hardware=None, simulated=False):
    """Turns a valid code into a Device. Returns (device, plain token)."""
    with transaction.atomic():
        enrollment = (
            EnrollmentCode.objects.select_for_update()
            .select_related("site__organisation")
            .filter(code_hash=hash_secret(normalize_enrollment_code(code)))
            .first()
        )
        if enrollment is None:
            raise EnrollmentError("enrollment code unknown")
        if enrollment.used_at:
            raise EnrollmentError("enrollment code already used")
        if enrollment.expires_at <= timezone.now():
            raise EnrollmentError("enrollment code expired")
        token, token_hash = new_secret(DEVICE_TOKEN_PREFIX)
        site = enrollment.site
        device = Device.objects.create(
            organisation=site.organisation,
            site=site,
            zone=enrollment.zone,
            name=name or f"board-{enrollment.hint.lower()}",
            token_hash=token_hash,
            hardware=hardware or {},
            simulated=simulated,
        )
        enrollment.used_at = timezone.now()
        enrollment.device = device
        enrollment.save(update_fields=["used_at", "device"])
        audit(None, "device.enroll", target=device, organisation=site.organisation, device=str(device.id))
    return device, token


def rotate_token(device, request=None):
    token, token_hash = new_secret(DEVICE_TOKEN_PREFIX)
    device.token_hash = token_hash
    device.revoked_at = None
    device.save(update_fields=["token_hash", "revoked_at"])
    audit(request, "device.rotate_token", target=device, organisation=device.organisation)
    return token


def revoke(device, request=None):
    device.revoked_at = timezone.now()
    device.online = False
    device.save(update_fields=["revoked_at", "online"])
    audit(request, "device.revoke", target=device, organisation=device.organisation)


def create_device_with_token(site, name, simulated=False, zone=None):
    """For seeding and tests: a device and its token without an enrollment code."""
    token, token_hash = new_secret(DEVICE_TOKEN_PREFIX)
    device = Device.objects.create(
        organisation=site.organisation, site=site, zone=zone, name=name, token_hash=token_hash, simulated=simulated
    )
    return device, token
