from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.settings import api_settings

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


#: What the endpoints boards call parse: JSON only, with the project's JSON parser (its
#: limits); a form or multipart body is a 415, as the schema says.
DEVICE_PARSERS = [p for p in api_settings.DEFAULT_PARSER_CLASSES if issubclass(p, JSONParser)]


class IsDevice(BasePermission):
    message = "a device token is required (Authorization: Device <token>)"

    def has_permission(self, request, view):
        return isinstance(request.auth, Device)
