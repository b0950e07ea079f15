from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from .access import role_of
from .models import Role


def role_required(*roles):
    """A page for logged-in users with one of `roles` (admins always): 403 otherwise."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            role = role_of(request.user)
            if role != Role.ADMIN and role not in roles:
                raise PermissionDenied("your role does not allow this page")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
