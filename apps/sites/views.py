"""Field-tech pages: device health, enrollment codes, revoking boards."""
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.access import chosen, chosen_or_404, visible_sites
from apps.accounts.decorators import role_required
from apps.accounts.models import Role

from . import enrollment
from .models import Device, EnrollmentCode, Zone

FIELD_ROLES = (Role.FIELD_TECH,)


@role_required(*FIELD_ROLES)
def devices(request):
    sites = visible_sites(request.user)
    rows = Device.objects.filter(site__in=sites).select_related("site", "zone").prefetch_related("cameras")
    site_filter = chosen(sites, request.GET.get("site"))
    if site_filter:
        rows = rows.filter(site=site_filter)
    codes = EnrollmentCode.objects.filter(site__in=sites).select_related("site", "zone")[:20]
    new_code = request.session.pop("new_enrollment_code", None)
    return render(request, "sites/devices.html", {
        "devices": rows, "sites": sites.prefetch_related("zones"), "codes": codes, "new_code": new_code,
        "site_filter": site_filter,
    })


@require_POST
@role_required(*FIELD_ROLES)
def create_enrollment_code(request):
    site = chosen_or_404(visible_sites(request.user), request.POST.get("site"))
    zone = None
    if request.POST.get("zone"):
        zone = chosen_or_404(Zone.objects.all(), request.POST["zone"], site=site)
    code_obj, code = enrollment.create_enrollment_code(site, request.user, zone=zone, request=request)
    # Shown once, on the next page, then gone: only its hash is stored.
    request.session["new_enrollment_code"] = {"code": code, "site": site.name,
                                              "expires_at": code_obj.expires_at.isoformat()}
    return redirect("sites:devices")


@require_POST
@role_required(*FIELD_ROLES)
def revoke_device(request, device_id):
    device = get_object_or_404(Device, pk=device_id, site__in=visible_sites(request.user))
    enrollment.revoke(device, request)
    messages.success(request, f"{device.name} is revoked: its token no longer works.")
    return redirect("sites:devices")
