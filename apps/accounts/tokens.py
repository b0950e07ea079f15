from django.utils import timezone

from .access import audit, organisation_of
from .models import ApiScope, ApiToken
from .secrets import new_secret

API_TOKEN_PREFIX = "aw"


def create_api_token(request, name, scopes):
    """Returns (ApiToken, the secret — shown once)."""
    unknown = set(scopes) - set(ApiScope.values)
    if unknown or not scopes:
        raise ValueError(f"choose scopes from {', '.join(ApiScope.values)}")
    secret, key_hash = new_secret(API_TOKEN_PREFIX)
    token = ApiToken.objects.create(
        organisation=organisation_of(request.user), name=name, prefix=secret[:10], key_hash=key_hash,
        scopes=sorted(set(scopes)), created_by=request.user,
    )
    audit(request, "api_token.create", target=token, scopes=token.scopes)
    return token, secret


def revoke_api_token(request, token):
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit(request, "api_token.revoke", target=token)
