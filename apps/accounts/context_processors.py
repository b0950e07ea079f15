from .access import role_of


def role(request):
    """`role` in every template, for the navigation."""
    return {"role": role_of(request.user) if hasattr(request, "user") else None}
