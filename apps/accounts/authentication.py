from django.utils import timezone
from rest_framework import authentication, exceptions

from .access import TokenPrincipal
from .models import ApiToken
from .secrets import hash_secret


class HashedSecretAuthentication(authentication.BaseAuthentication):
    """`Authorization: <keyword> <secret>`, where only the secret's hash is stored."""

    keyword = ""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("malformed Authorization header")
        return self.authenticate_hash(hash_secret(header[1]))

    def authenticate_hash(self, secret_hash):
        raise NotImplementedError

    def authenticate_header(self, request):
        return self.keyword


class ApiTokenAuthentication(HashedSecretAuthentication):
    """`Authorization: Bearer aw_…` for other systems."""

    keyword = "Bearer"

    def authenticate_hash(self, secret_hash):
        token = ApiToken.objects.select_related("organisation").filter(key_hash=secret_hash).first()
        if token is None or not token.active:
            raise exceptions.AuthenticationFailed("unknown or revoked API token")
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return TokenPrincipal(token=token, scopes=list(token.scopes)), token
