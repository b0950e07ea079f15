"""The one answer to "which of these objects may this principal see?", used wherever a
choice is offered: filter drop-downs, related fields of serializers (and so the
browsable API's HTML forms), and the lookups behind them. Another organisation's objects
are left out, so picking one answers exactly as picking an id that does not exist."""
from django.db.models import QuerySet
from rest_framework import serializers

from .access import organisation_of, visible_sites


def scoped(queryset: QuerySet, user) -> QuerySet:
    """`queryset` narrowed to what `user` may see. By the model's links, in order:
    Site → the user's sites; a `site` field → objects of those sites; ModelVersion → the
    organisation's versions and the shipped ones; an `organisation` field → the
    organisation's; a `dataset` or `device` field → through those. A model with none of
    these links is not offered at all (empty)."""
    from apps.sites.models import Site
    from apps.training.models import ModelVersion

    model = queryset.model
    fields = {f.name for f in model._meta.get_fields()}
    org = organisation_of(user)
    if model is Site:
        return queryset.filter(pk__in=visible_sites(user).values("pk"))
    if model is ModelVersion:
        from apps.training.registry import versions_for

        return queryset.filter(pk__in=versions_for(org).values("pk")) if org else queryset.none()
    if "site" in fields:
        return queryset.filter(site__in=visible_sites(user))
    if org is None:
        return queryset.none()
    if "organisation" in fields:
        return queryset.filter(organisation=org)
    if "dataset" in fields:
        return queryset.filter(dataset__organisation=org)
    if "device" in fields:
        return queryset.filter(device__site__in=visible_sites(user))
    return queryset.none()


class ScopedRelations:
    """Serializer mixin: every writable related field offers and accepts only what the
    requesting principal may see (`scoped`). Used by every serializer of the apps (through
    ScopedModelSerializer / ScopedSerializer), so the browsable API's forms never list
    another organisation's names and its ids answer as unknown ones."""

    def get_fields(self):
        fields = super().get_fields()
        request = self.context.get("request")
        user = getattr(request, "user", None)
        for field in fields.values():
            rel = field.child_relation if isinstance(field, serializers.ManyRelatedField) else field
            if isinstance(rel, serializers.RelatedField) and getattr(rel, "queryset", None) is not None:
                rel.queryset = scoped(rel.queryset.all(), user) if user is not None else rel.queryset.none()
        return fields


class ScopedModelSerializer(ScopedRelations, serializers.ModelSerializer):
    pass


class ScopedSerializer(ScopedRelations, serializers.Serializer):
    pass
