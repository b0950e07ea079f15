from django import template

from apps.accounts.access import role_of, visible_sites
from apps.accounts.models import Role

from ..models import ACTIVE_STATES, Alert

register = template.Library()

ALERT_ROLES = (Role.ADMIN, Role.SAFETY_OFFICER)


@register.inclusion_tag("alerts/_recent_list.html", takes_context=True)
def recent_alerts(context, site, limit=5):
    """`{% recent_alerts site %}`: the site's latest alerts with their buttons, for people
    who handle alerts; nothing for other roles or sites the user cannot see."""
    request = context.get("request")
    user = getattr(request, "user", None)
    allowed = user is not None and role_of(user) in ALERT_ROLES and visible_sites(user).filter(pk=site.pk).exists()
    alerts = []
    if allowed:
        alerts = list(Alert.objects.filter(site=site).select_related("acknowledged_by", "resolved_by")[:limit])
    return {
        "allowed": allowed, "site": site, "alerts": alerts, "request": request,
        "active_count": Alert.objects.filter(site=site, state__in=ACTIVE_STATES).count() if allowed else 0,
        "csrf_token": context.get("csrf_token"),
    }
