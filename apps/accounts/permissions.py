from rest_framework.permissions import BasePermission

from .access import TokenPrincipal, role_of
from .models import Role


def roles_or_scope(*roles, scope=None):
    """A permission class: users with one of `roles` (admins always), or API tokens
    holding `scope`."""

    class RolesOrScope(BasePermission):
        message = "your role or token scope does not allow this"

        def has_permission(self, request, view):
            user = request.user
            if isinstance(user, TokenPrincipal):
                return scope is not None and scope in user.scopes
            role = role_of(user)
            return role == Role.ADMIN or role in roles

    return RolesOrScope
