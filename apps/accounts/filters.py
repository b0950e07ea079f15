"""django-filter with every model choice scoped to the requesting principal."""
from datetime import timezone as dt_timezone

from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField
from django_filters.filters import IsoDateTimeFilter
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


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC: PostgreSQL refuses UTC offsets beyond
    ±15:59 that ISO 8601 allows, and a date at the calendar's edge may not convert."""

    def clean(self, value):
        """The value as an aware UTC datetime (None when empty); a 400 when it has no UTC time."""
        value = super().clean(value)
        if value is None:
            return None
        try:
            return value.astimezone(dt_timezone.utc)
        except (OverflowError, ValueError):
            raise ValidationError("This date and time is outside the supported range.", code="invalid") from None


class UtcDateTimeFilter(IsoDateTimeFilter):
    """IsoDateTimeFilter that queries in UTC (UtcDateTimeField)."""

    field_class = UtcDateTimeField
