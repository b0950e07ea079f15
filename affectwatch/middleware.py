"""Request checks that hold for every view."""
import json

from django.http import HttpResponse


class RefuseNulInQuery:
    """A NUL character in a query string (`%00`) is refused with a 400 before any view
    (the innermost middleware, sync-only on purpose: see settings.MIDDLEWARE):
    PostgreSQL cannot hold NUL in text, so a filter that compares with it fails inside the
    database — for every hand-written `request.GET` filter at once."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = request.META.get("QUERY_STRING", "")
        if "%00" in query or "\x00" in query:
            detail = "the query string contains a NUL character"
            if request.path.startswith("/api/"):
                return HttpResponse(json.dumps({"detail": detail}), status=400, content_type="application/json")
            return HttpResponse(detail, status=400, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
