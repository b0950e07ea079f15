from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission

from apps.accounts.secrets import hash_secret

from .models import Device


class DeviceTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Device <token>`: request.auth is the Device."""

    keyword = "Device"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("malformed Authorization header")
        device = Device.objects.select_related("site", "organisation").filter(token_hash=hash_secret(header[1])).first()
        if device is None or not device.active:
            raise exceptions.AuthenticationFailed("unknown or revoked device token")
        return AnonymousUser(), device

    def authenticate_header(self, request):
        return self.keyword


class IsDevice(BasePermission):
    message = "a device token is required (Authorization: Device <token>)"

    def has_permission(self, request, view):
        return isinstance(request.auth, Device)
