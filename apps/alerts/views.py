"""Pages for people who watch alerts: the alerts list with acknowledge and resolve, and
a rule editor per site. Admins and safety officers, on the sites they can see."""
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from apps.accounts.access import chosen_or_404, visible_sites
from apps.accounts.decorators import role_required
from apps.accounts.models import Role

from . import services
from .forms import AlertNoteForm, AlertRuleForm
from .models import ACTIVE_STATES, Alert, AlertRule, AlertState

ALERT_ROLES = (Role.SAFETY_OFFICER,)  # and admins, always
STATE_FILTERS = {"active": ACTIVE_STATES, "open": (AlertState.OPEN,), "acknowledged": (AlertState.ACKNOWLEDGED,),
                 "resolved": (AlertState.RESOLVED,), "all": None}


@role_required(*ALERT_ROLES)
def alert_list(request):
    sites = visible_sites(request.user)
    alerts = Alert.objects.filter(site__in=sites).select_related("site", "acknowledged_by", "resolved_by")
    site = None
    if request.GET.get("site"):
        site = chosen_or_404(sites, request.GET["site"])
        alerts = alerts.filter(site=site)
    state = request.GET.get("state", "active")
    if state not in STATE_FILTERS:
        state = "active"
    if STATE_FILTERS[state] is not None:
        alerts = alerts.filter(state__in=STATE_FILTERS[state])
    page = Paginator(alerts, 50).get_page(request.GET.get("page"))
    return render(request, "alerts/list.html", {
        "page": page, "alerts": page.object_list, "sites": sites, "site": site, "state": state,
        "states": list(STATE_FILTERS), "can_act": True,
    })


def _back(request):
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect("alerts:list")


def _transition(request, alert_id, change, done):
    alert = get_object_or_404(Alert, pk=alert_id, site__in=visible_sites(request.user))
    form = AlertNoteForm(request.POST)
    note = form.cleaned_data["note"] if form.is_valid() else ""
    try:
        change(request, alert, note)
    except services.StateError as exc:
        messages.error(request, str(exc).capitalize() + ".")
    else:
        messages.success(request, f"Alert “{alert.rule_name}” at {alert.site.name} {done}.")
    return _back(request)


@require_POST
@role_required(*ALERT_ROLES)
def alert_acknowledge(request, alert_id):
    return _transition(request, alert_id, services.acknowledge, "acknowledged")


@require_POST
@role_required(*ALERT_ROLES)
def alert_resolve(request, alert_id):
    return _transition(request, alert_id, services.resolve, "resolved")


def _site(request, site_id):
    return get_object_or_404(visible_sites(request.user), pk=site_id)


def _show_secret(request, site, rule, created):
    # Rendered, not redirected: the secret must not sit in a cookie or session; nor in a cache.
    response = render(request, "alerts/secret.html", {"site": site, "rule": rule, "created": created})
    add_never_cache_headers(response)
    return response


@role_required(*ALERT_ROLES)
def site_rules(request, site_id):
    """The site's rules, and a form for a new one."""
    site = _site(request, site_id)
    if request.method == "POST":
        form = AlertRuleForm(request.POST, site=site)
        if form.is_valid():
            rule = services.create_rule(request, site, **form.cleaned_data)
            return _show_secret(request, site, rule, created=True)
    else:
        form = AlertRuleForm(site=site, initial={"threshold_pct": 40, "window_minutes": 15, "min_detections": 50,
                                                 "cooldown_minutes": 30, "enabled": True})
    rules = site.alert_rules.all()
    return render(request, "alerts/rules.html", {"site": site, "rules": rules, "form": form})


@role_required(*ALERT_ROLES)
def rule_edit(request, site_id, rule_id):
    site = _site(request, site_id)
    rule = get_object_or_404(AlertRule, pk=rule_id, site=site)
    if request.method == "POST":
        form = AlertRuleForm(request.POST, instance=rule, site=site)
        if form.is_valid():
            fields = form.cleaned_data
            rule.refresh_from_db()  # the form wrote into the instance; the service diffs against the stored rule
            services.update_rule(request, rule, **fields)
            messages.success(request, f"Rule “{rule.name}” saved.")
            return redirect("alerts:site-rules", site_id=site.pk)
    else:
        form = AlertRuleForm(instance=rule, site=site)
    return render(request, "alerts/rule_edit.html", {"site": site, "rule": rule, "form": form})


@require_POST
@role_required(*ALERT_ROLES)
def rule_delete(request, site_id, rule_id):
    site = _site(request, site_id)
    rule = get_object_or_404(AlertRule, pk=rule_id, site=site)
    name = rule.name
    services.delete_rule(request, rule)
    messages.success(request, f"Rule “{name}” deleted. Its past alerts are kept.")
    return redirect("alerts:site-rules", site_id=site.pk)


@require_POST
@role_required(*ALERT_ROLES)
def rule_rotate_secret(request, site_id, rule_id):
    site = _site(request, site_id)
    rule = get_object_or_404(AlertRule, pk=rule_id, site=site)
    services.rotate_secret(request, rule)
    return _show_secret(request, site, rule, created=False)
