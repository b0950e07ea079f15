"""django-filter with every model choice scoped to the requesting principal."""
from datetime import timezone as dt_timezone

from django.core.exceptions import ValidationError
from django.forms import Field, Select
from django_filters.fields import IsoDateTimeField
from django_filters.filters import BooleanFilter, IsoDateTimeFilter
from django_filters.rest_framework import DjangoFilterBackend
from django_filters.utils import translate_validation

from .scope import scoped


class StrictBooleanField(Field):
    """true / false (or 1 / 0), or empty for no filter; any other value is a 400, where
    django-filter's own boolean reads an unknown spelling as "no filter"."""

    widget = Select(choices=[("", "---------"), ("true", "Yes"), ("false", "No")])
    VALUES = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value):
        if value in (None, ""):
            return None
        if str(value).lower() not in self.VALUES:
            raise ValidationError("Use true or false.", code="invalid")
        return self.VALUES[str(value).lower()]


class ScopedFilterBackend(DjangoFilterBackend):
    """DjangoFilterBackend whose model-choice filters (`?site=`, `?dataset=`, ...) offer
    only what the requester may see (`scope.scoped`), so the browsable API's drop-downs
    never list another organisation's names. A filter is a predicate: a well-formed id
    that names nothing the requester can see — unknown, or another organisation's —
    matches nothing (an empty page, the same for both); a malformed one is a 400. Boolean
    filters take true / false only (`StrictBooleanField`); an empty value is no filter."""

    def get_filterset(self, request, queryset, view):
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            for f in filterset.filters.values():
                qs = getattr(f, "queryset", None)
                if qs is not None and not callable(qs):
                    f.queryset = scoped(qs.all(), request.user)
                if isinstance(f, BooleanFilter):
                    f.field_class = StrictBooleanField
                    f.extra["widget"] = StrictBooleanField.widget
        return filterset

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if filterset.is_valid():
            return filterset.qs
        if names_nothing(filterset):
            return queryset.none()
        raise translate_validation(filterset.errors)


def names_nothing(filterset) -> bool:
    """Whether every error of an invalid filterset is a model-choice filter given a
    well-formed key (e.g. an integer for an integer primary key) that is not among its
    scoped choices."""
    for name, errors in filterset.form.errors.as_data().items():
        f = filterset.filters.get(name)
        qs = getattr(f, "queryset", None)
        if qs is None or any(e.code != "invalid_choice" for e in errors):
            return False
        key = qs.model._meta.get_field(f.extra.get("to_field_name") or qs.model._meta.pk.name)
        try:
            key.to_python(filterset.form.data.get(name))
        except ValidationError:
            return False
    return True


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
