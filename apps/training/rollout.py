"""Deploying a model version to a site's boards through their heartbeats.

A deployment sets the desired model of one canary board. When the canary reports the
new version in a heartbeat (it downloaded, verified, test-ran and swapped it), the rest
of the site's boards get it too. A roll-back restores each board's previous desired
model. Boards do the work; the server only changes what it asks for.
"""
from __future__ import annotations

from django.db import transaction

from apps.accounts.access import audit
from apps.sites.models import Device

from .models import Deployment, ModelVersion


class RolloutError(ValueError):
    pass


def _active_devices(site):
    return Device.objects.filter(site=site, revoked_at__isnull=True, token_hash__isnull=False)


def _desire(device: Device, version: ModelVersion | None):
    device.desired_model_version = version.version if version else ""
    device.desired_model_url = version.download_url if version else ""
    device.desired_model_sha256 = version.sha256 if version else ""
    device.save(update_fields=["desired_model_version", "desired_model_url", "desired_model_sha256"])


def pick_canary(devices):
    """An online board, the most recently seen first: it will answer soonest."""
    return sorted(devices, key=lambda d: (not d.online, -(d.last_seen_at.timestamp() if d.last_seen_at else 0),
                                          d.name))[0]


def deploy(version: ModelVersion, site, user, canary: Device | None = None, override: str = "") -> Deployment:
    """Start a roll-out. Raises RolloutError (another organisation's version, no boards,
    an offline canary, or blockers without an admin override)."""
    from .registry import Blocked, require_usable

    if version.organisation_id not in (None, site.organisation_id):
        raise RolloutError("this model version belongs to another organisation")
    with transaction.atomic():  # a refused roll-out leaves no override note behind
        try:
            require_usable(version, user, override, "deployed")
        except Blocked as exc:
            raise RolloutError(str(exc)) from None
        devices = list(_active_devices(site).select_for_update())
        if not devices:
            raise RolloutError(f"site {site.name} has no enrolled boards")
        if canary is None:
            canary = pick_canary(devices)
        elif canary.pk not in {d.pk for d in devices}:
            raise RolloutError("the canary must be an enrolled board of this site")
        else:
            canary = next(d for d in devices if d.pk == canary.pk)
            if not canary.online:
                seen = canary.last_seen_at.strftime("%Y-%m-%d %H:%M UTC") if canary.last_seen_at else "never"
                raise RolloutError(f"the canary {canary.name} is offline (last heartbeat: {seen}); "
                                   "choose an online board, or let Affectwatch pick one")
        superseded = list(Deployment.objects.filter(site=site, status__in=Deployment.ACTIVE)
                          .select_related("model_version"))
        previous = {str(d.pk): _wanted_before(d, superseded) for d in devices}
        for old in superseded:
            old.status = Deployment.Status.SUPERSEDED
            old.note(f"superseded by a deployment of {version.version}")
            old.save(update_fields=["status", "events", "updated_at"])
        dep = Deployment(organisation=site.organisation, site=site, model_version=version, canary=canary,
                         created_by=user, previous=previous)
        dep.note(f"canary {canary.name} asked to run {version.version}")
        dep.save()
        _desire(canary, version)
        audit(user, "model.deploy", version.version, organisation=site.organisation, site=site.id,
              canary=str(canary.pk), deployment=dep.pk)
        if canary.model_version == version.version:  # already runs it
            _advance(dep, canary)
    return dep


def _wanted_before(device: Device, superseded) -> dict:
    """What a roll-back of a new deployment returns `device` to: what it was asked to run
    before any roll-out still in progress (a superseded one's change is undone too, so a
    roll-back never leaves a board wanting the version it rolls back)."""
    for old in superseded:
        earlier = old.previous.get(str(device.pk))
        if earlier is not None and device.desired_model_version == old.model_version.version:
            return earlier
    return {"version": device.desired_model_version, "url": device.desired_model_url,
            "sha256": device.desired_model_sha256, "running": device.model_version}


def _advance(dep: Deployment, device: Device):
    version = dep.model_version
    if dep.status == Deployment.Status.CANARY and device.pk == dep.canary_id and device.model_version == version.version:
        rest = [d for d in _active_devices(dep.site) if d.pk != device.pk]
        for d in rest:
            if str(d.pk) not in dep.previous:
                dep.previous[str(d.pk)] = {"version": d.desired_model_version, "url": d.desired_model_url,
                                           "sha256": d.desired_model_sha256, "running": d.model_version}
            _desire(d, version)
        dep.status = Deployment.Status.ROLLING_OUT
        dep.note(f"canary {device.name} runs {version.version}; rolling out to {len(rest)} more board(s)")
    if dep.status == Deployment.Status.ROLLING_OUT:
        lagging = _active_devices(dep.site).exclude(model_version=version.version)
        if not lagging.exists():
            dep.status = Deployment.Status.COMPLETE
            dep.note(f"every board runs {version.version}")
    if dep.status == Deployment.Status.CANARY and device.pk == dep.canary_id:
        error = (device.health or {}).get("model_error", "")
        if error and version.version in error and not any(e["event"].startswith("canary refused") for e in dep.events):
            dep.note(f"canary refused the model: {error[:200]}")
    dep.save()


def on_heartbeat(device: Device):
    """Called whenever a device's reported state is saved."""
    for dep in Deployment.objects.filter(site_id=device.site_id, status__in=Deployment.ACTIVE).select_related(
            "model_version"):
        if dep.status != Deployment.Status.CANARY and not device.desired_model_version and device.active:
            # A board enrolled after the canary proved the model: it joins the roll-out.
            dep.previous.setdefault(str(device.pk), {"version": "", "url": "", "sha256": "",
                                                     "running": device.model_version})
            _desire(device, dep.model_version)
            dep.note(f"{device.name} joined the roll-out")
            if dep.status == Deployment.Status.COMPLETE and device.model_version != dep.model_version.version:
                dep.status = Deployment.Status.ROLLING_OUT
            dep.save()
        if dep.status in (Deployment.Status.CANARY, Deployment.Status.ROLLING_OUT):
            _advance(dep, device)


def rollback(dep: Deployment, user, reason: str = "") -> Deployment:
    """Every board of the site goes back to what it was asked to run before `dep`.
    user None: the system did it (`reason` says why)."""
    from .registry import shipped_version

    if dep.status in (Deployment.Status.ROLLED_BACK, Deployment.Status.SUPERSEDED):
        raise RolloutError(f"this deployment is {dep.get_status_display().lower()} already")
    with transaction.atomic():
        for d in _active_devices(dep.site).select_for_update():
            prev = dep.previous.get(str(d.pk)) or {}
            if prev.get("version"):
                d.desired_model_version, d.desired_model_url, d.desired_model_sha256 = (
                    prev["version"], prev["url"], prev["sha256"])
                d.save(update_fields=["desired_model_version", "desired_model_url", "desired_model_sha256"])
                continue
            # The board ran its own configured model: ask for that again if the registry
            # knows it, else the shipped one.
            known = ModelVersion.objects.filter(version=prev.get("running") or "").first()
            if known and known.organisation_id not in (None, dep.organisation_id):
                known = None
            _desire(d, known or shipped_version())
        dep.status = Deployment.Status.ROLLED_BACK
        dep.note(f"rolled back by {user or 'Affectwatch'}" + (f": {reason}" if reason else ""))
        dep.save()
        audit(user, "model.rollback", dep.model_version.version, organisation=dep.organisation, deployment=dep.pk,
              reason=reason)
    return dep
