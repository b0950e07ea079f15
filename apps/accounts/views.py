"""Admin pages: API tokens for other systems, and the audit log."""
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .access import organisation_of
from .decorators import role_required
from .models import ApiScope, ApiToken, AuditEvent
from .tokens import create_api_token, revoke_api_token


@role_required()
def tokens(request):
    org = organisation_of(request.user)
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        scopes = request.POST.getlist("scopes")
        if not name:
            messages.error(request, "Give the token a name, e.g. the system that will use it.")
        else:
            try:
                token, secret = create_api_token(request, name[:100], scopes)
            except ValueError as exc:
                messages.error(request, str(exc))
            else:
                request.session["new_api_token"] = {"name": token.name, "secret": secret}
        return redirect("accounts:tokens")
    return render(request, "accounts/tokens.html", {
        "tokens": ApiToken.objects.filter(organisation=org).order_by("-created_at"),
        "scopes": ApiScope.choices,
        "new_token": request.session.pop("new_api_token", None),
    })


@require_POST
@role_required()
def revoke_token(request, token_id):
    token = get_object_or_404(ApiToken, pk=token_id, organisation=organisation_of(request.user))
    revoke_api_token(request, token)
    messages.success(request, f"Token “{token.name}” is revoked.")
    return redirect("accounts:tokens")


@role_required()
def audit_log(request):
    events = AuditEvent.objects.filter(organisation=organisation_of(request.user)).select_related("actor")
    action = request.GET.get("action")
    if action:
        events = events.filter(action=action)
    return render(request, "accounts/audit.html", {"events": events[:500], "action": action})
