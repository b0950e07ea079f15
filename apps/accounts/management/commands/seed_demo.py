"""Creates (once) a demo organisation with sites, zones, simulated devices and one user
per role. Passwords are generated and printed the first time only; device tokens are
rotated on every run and written to var/demo-devices.json (0600) for the simulator, whose
heartbeats announce the cameras.

The demo's `admin` is the organisation's admin — an application role scoped to its
organisation — not a Django superuser: the Django admin (/admin/) sees every
organisation and is for platform operators only. `--operator NAME` creates such an
operator (a superuser with no organisation) when one is wanted."""
import json
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts.models import Membership, Organisation, Role
from apps.sites.enrollment import rotate_token
from apps.sites.models import Device, Site, Zone

DEMO_SITES = {
    "assembly-hall": ("Assembly Hall", ["Line 1", "Line 2"]),
    "warehouse": ("Warehouse", ["Dock"]),
}
DEMO_DEVICES = [("assembly-hall", "Line 1", "hall-board-1"), ("assembly-hall", "Line 2", "hall-board-2"),
                ("warehouse", "Dock", "dock-board-1")]
# Fires on the Assembly Hall's stressful weekday afternoons (Line 2) in the history.
DEMO_RULE = {"name": "Stressful afternoon", "threshold_pct": 30, "window_minutes": 60, "min_detections": 300,
             "cooldown_minutes": 120}
DEMO_USERS = [("admin", Role.ADMIN), ("officer", Role.SAFETY_OFFICER), ("researcher", Role.RESEARCHER),
              ("fieldtech", Role.FIELD_TECH)]


class Command(BaseCommand):
    help = "Create the demo organisation, sites, simulated devices and users (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--operator", metavar="NAME", help="also create a platform operator (Django superuser)")
        parser.add_argument("--history-days", type=int, default=14,
                            help="days of simulated history written on the first run (0: none)")

    def handle(self, *args, **options):
        with transaction.atomic():
            org, _ = Organisation.objects.get_or_create(slug="demo", defaults={"name": "Demo Works"})
            sites = {}
            for slug, (name, zones) in DEMO_SITES.items():
                sites[slug], _ = Site.objects.get_or_create(organisation=org, slug=slug, defaults={"name": name})
                for zone in zones:
                    Zone.objects.get_or_create(site=sites[slug], name=zone)
            devices = []
            for slug, zone_name, name in DEMO_DEVICES:
                zone = Zone.objects.get(site=sites[slug], name=zone_name)
                device, _ = Device.objects.get_or_create(
                    site=sites[slug], name=name, defaults={"organisation": org, "zone": zone, "simulated": True}
                )
                devices.append({"id": str(device.id), "name": name, "site": slug, "token": rotate_token(device)})
            created = []
            User = get_user_model()
            for username, role in DEMO_USERS:
                if User.objects.filter(username=username).exists():
                    continue
                password = secrets.token_urlsafe(12)
                user = User.objects.create_user(username, password=password)
                Membership.objects.create(user=user, organisation=org, role=role, all_sites=True)
                created.append((username, role.label, password))
            operator = options.get("operator")
            if operator and not User.objects.filter(username=operator).exists():
                password = secrets.token_urlsafe(16)
                User.objects.create_superuser(operator, password=password)
                created.append((operator, "platform operator (Django admin)", password))
        if options.get("history_days", 14):
            self._history(sites, options.get("history_days", 14))
        path = settings.VAR_DIR / "demo-devices.json"
        path.write_text(json.dumps(devices, indent=2))
        path.chmod(0o600)
        if created:
            lines = [f"  {u:<11} {r:<15} {p}" for u, r, p in created]
            text = "Demo users (shown once; change them with `manage.py changepassword NAME`):\n" + "\n".join(lines)
            creds = settings.VAR_DIR / "demo-credentials.txt"
            with open(creds, "a") as f:  # an operator added later keeps the users' lines
                f.write(text + "\n")
            creds.chmod(0o600)
            self.stdout.write(self.style.SUCCESS(text))
        else:
            self.stdout.write(f"Demo data present; the demo users' passwords are in {settings.VAR_DIR / 'demo-credentials.txt'}.")

    def _history(self, sites, days):
        """The demo's alert rule, and `days` of history for boards never released before."""
        from apps.alerts.models import AlertRule
        from apps.alerts.webhooks import new_webhook_secret
        from apps.telemetry.demo_history import backfill

        AlertRule.objects.get_or_create(
            site=sites["assembly-hall"], name=DEMO_RULE["name"],
            defaults={**{k: v for k, v in DEMO_RULE.items() if k != "name"}, "webhook_secret": new_webhook_secret()})
        devices = Device.objects.filter(organisation__slug="demo", simulated=True).select_related("site")
        done = backfill(list(devices), days=days, stressful={"hall-board-2"})
        if done["devices"]:
            self.stdout.write(f"Wrote {days} days of simulated history for {done['devices']} boards "
                              f"({done['cells']:,} released minutes, {done['alerts']} alert(s) opened).")
