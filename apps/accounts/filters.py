"""django-filter with every model choice scoped to the requesting principal."""
from django_filters.rest_framework import DjangoFilterBackend

from .scope import scoped


class ScopedFilterBackend(DjangoFilterBackend):
    """DjangoFilterBackend whose model-choice filters (`?site=`, `?dataset=`, ...) offer
    and accept only what the requester may see (`scope.scoped`). Another organisation's
    id is then "not one of the available choices", exactly like an unknown id, and the
    browsable API's filter drop-downs never list another organisation's names."""

    def get_filterset(self, request, queryset, view):
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            for f in filterset.filters.values():
                qs = getattr(f, "queryset", None)
                if qs is not None and not callable(qs):
                    f.queryset = scoped(qs.all(), request.user)
        return filterset
