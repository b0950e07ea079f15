"""Who is asking, which organisation they act for, and which sites they may see.

Every view goes through these helpers, so the tenant and site checks live in one place.
A request's principal is a logged-in user with a Membership, or an API token
(`TokenPrincipal`)."""
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from .models import AuditEvent, Role


@dataclass
class TokenPrincipal:
    """request.user for a call made with an API token."""

    token: object
    is_authenticated: bool = True
    is_active: bool = True
    is_anonymous: bool = False
    is_staff: bool = False
    is_superuser: bool = False
    scopes: list = field(default_factory=list)

    @property
    def pk(self):
        return None

    def __str__(self):
        return f"token:{self.token.prefix}"


def organisation_of(user):
    if isinstance(user, TokenPrincipal):
        return user.token.organisation
    membership = getattr(user, "membership", None) if getattr(user, "is_authenticated", False) else None
    return membership.organisation if membership else None


def role_of(user):
    if isinstance(user, TokenPrincipal):
        return Role.API_CONSUMER
    membership = getattr(user, "membership", None) if getattr(user, "is_authenticated", False) else None
    return membership.role if membership else None


def visible_sites(user):
    """The sites this principal may see: never another organisation's."""
    from apps.sites.models import Site

    org = organisation_of(user)
    if org is None:
        return Site.objects.none()
    sites = Site.objects.filter(organisation=org)
    if isinstance(user, TokenPrincipal):
        return sites
    membership = user.membership
    if membership.role == Role.ADMIN or membership.all_sites:
        return sites
    return sites.filter(pk__in=membership.sites.values("pk"))


def require_role(user, *roles):
    if role_of(user) not in roles:
        raise PermissionDenied("your role does not allow this")


def audit(request_or_user, action, target="", organisation=None, **details):
    user = getattr(request_or_user, "user", request_or_user)
    request = request_or_user if hasattr(request_or_user, "META") else None
    ip = request.META.get("REMOTE_ADDR") if request is not None else None
    real_user = user if getattr(user, "pk", None) else None
    return AuditEvent.objects.create(
        organisation=organisation or organisation_of(user),
        actor=real_user,
        actor_label=str(user) if user is not None else "system",
        action=action,
        target=str(target)[:200],
        details=details,
        ip=ip,
    )


def chosen(queryset, value, **filters):
    """The object of `queryset` whose primary key a form or query string names, or None —
    for a missing id, one of another organisation (the queryset is already scoped) and
    a value that is no id at all ('abc', '²', a NUL) alike."""
    if value in (None, ""):
        return None
    try:
        pk = queryset.model._meta.pk.to_python(value)
        return queryset.filter(pk=pk, **filters).first()
    except (ValidationError, ValueError, TypeError, OverflowError):
        return None


def chosen_or_404(queryset, value, **filters):
    """`chosen`, or a 404 that reads the same for every kind of miss."""
    obj = chosen(queryset, value, **filters)
    if obj is None:
        raise Http404(f"no such {queryset.model._meta.verbose_name}")
    return obj
