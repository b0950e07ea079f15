from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from apps.accounts.authentication import HashedSecretAuthentication

from .models import Device


class DeviceTokenAuthentication(HashedSecretAuthentication):
    """`Authorization: Device <token>`: request.auth is the Device."""

    keyword = "Device"

    def authenticate_hash(self, secret_hash):
        device = Device.objects.select_related("site", "organisation").filter(token_hash=secret_hash).first()
        if device is None or not device.active:
            raise exceptions.AuthenticationFailed("unknown or revoked device token")
        return AnonymousUser(), device


class IsDevice(BasePermission):
    message = "a device token is required (Authorization: Device <token>)"

    def has_permission(self, request, view):
        return isinstance(request.auth, Device)
