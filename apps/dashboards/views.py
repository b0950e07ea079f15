from datetime import timedelta

from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from apps.accounts.access import role_of, visible_sites
from apps.accounts.decorators import role_required
from apps.accounts.models import Role
from apps.telemetry.trends import k_anonymity, summary, trend

DASHBOARD_ROLES = (Role.SAFETY_OFFICER, Role.RESEARCHER)


def home(request):
    """Where a user lands: the sites overview, or the devices page for field techs."""
    if request.user.is_authenticated and role_of(request.user) == Role.FIELD_TECH:
        return redirect("sites:devices")
    return overview(request)


@role_required(*DASHBOARD_ROLES)
def overview(request):
    now = timezone.now()
    sites = visible_sites(request.user).annotate(
        devices_total=Count("devices", filter=Q(devices__revoked_at__isnull=True)),
        devices_online=Count("devices", filter=Q(devices__revoked_at__isnull=True, devices__online=True)),
    )
    cards = []
    for site in sites:
        day = trend(site, now - timedelta(hours=24), now, bucket="hour")
        spark = [
            None if s else round(100.0 * n / max(1, n + u + p), 1)
            for n, u, p, s in zip(day["negative"], day["neutral"], day["positive"], day["suppressed"])
        ]
        cards.append({"site": site, "now": summary(site, now - timedelta(hours=1), now),
                      "spark_t": day["t"], "spark": spark})
    return render(request, "dashboards/overview.html", {"cards": cards, "k_anonymity": k_anonymity()})


@role_required(*DASHBOARD_ROLES)
def site_detail(request, site_id):
    site = get_object_or_404(visible_sites(request.user), pk=site_id)
    return render(
        request,
        "dashboards/site.html",
        {
            "site": site,
            "zones": site.zones.all(),
            "devices": site.devices.filter(revoked_at__isnull=True).prefetch_related("cameras"),
            "k_anonymity": k_anonymity(),
        },
    )
