import hashlib
import hmac

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from .collector import exposition


def _allowed(request) -> bool | None:
    """True for the scraper's token or a superuser; False for a signed-in user who is not
    one; None when nobody (or a wrong token) is calling."""
    header = request.headers.get("Authorization", "")
    expected = settings.AFFECTWATCH["METRICS_TOKEN_SHA256"]
    if header.startswith("Bearer ") and expected:
        given = hashlib.sha256(header.removeprefix("Bearer ").strip().encode()).hexdigest()
        if hmac.compare_digest(given, expected):
            return True
    if request.user.is_authenticated:
        return request.user.is_superuser
    return None


@require_GET
def metrics(request):
    """Prometheus scrape endpoint: `Authorization: Bearer $AFFECTWATCH_METRICS_TOKEN`, or a
    superuser's session. 401 for anyone else not signed in, 403 for other users."""
    allowed = _allowed(request)
    if allowed is None:
        return JsonResponse({"detail": "metrics need the scraper's bearer token"}, status=401,
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    if not allowed:
        return JsonResponse({"detail": "metrics are for the operator (superusers) only"}, status=403)
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
