"""Failed log-ins and lockouts into the audit log, under the organisation of the account
that was tried (so its admins see them); attempts on unknown usernames are logged
without naming them (a mistyped password in the username field must not be stored)."""
from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from .access import audit
from .models import Membership


def _account(username):
    user = get_user_model().objects.filter(username=username).first() if username else None
    membership = Membership.objects.filter(user=user).select_related("organisation").first() if user else None
    return user, membership.organisation if membership else None


@receiver(user_login_failed)
def record_failed_login(sender, credentials, request=None, **kwargs):
    user, organisation = _account(credentials.get("username"))
    audit(request, "auth.login_failed", target=user.username if user else "(unknown username)",
          organisation=organisation)


@receiver(user_locked_out)
def record_lockout(sender, request=None, username=None, ip_address=None, **kwargs):
    user, organisation = _account(username)
    audit(request, "auth.locked_out", target=user.username if user else "(unknown username)",
          organisation=organisation, ip_address=ip_address)
