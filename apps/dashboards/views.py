from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render

from apps.accounts.access import role_of, visible_sites


@login_required
def home(request):
    sites = visible_sites(request.user).prefetch_related("devices")
    return render(request, "dashboards/home.html", {"sites": sites, "role": role_of(request.user)})


@login_required
def site_detail(request, site_id):
    site = get_object_or_404(visible_sites(request.user), pk=site_id)
    return render(
        request,
        "dashboards/site.html",
        {
            "site": site,
            "zones": site.zones.all(),
            "devices": site.devices.prefetch_related("cameras"),
            "k_anonymity": settings.AFFECTWATCH["K_ANONYMITY"],
        },
    )
