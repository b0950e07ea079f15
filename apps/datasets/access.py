"""Who may work with data sets: researchers and admins of the data set's organisation."""
from django.db.models import Count

from apps.accounts.access import organisation_of
from apps.accounts.models import Role
from apps.accounts.permissions import roles_or_scope

from .models import Dataset, Sample, Subject

# No API-token scope: face images are for people with a researcher's role only.
Researchers = roles_or_scope(Role.RESEARCHER)
RESEARCH_ROLES = (Role.RESEARCHER, Role.ADMIN)


def datasets_of(user):
    org = organisation_of(user)
    if org is None:
        return Dataset.objects.none()
    return Dataset.objects.filter(organisation=org).annotate(
        sample_count=Count("samples", distinct=True), subject_count=Count("subjects", distinct=True)
    )


def subjects_of(user):
    org = organisation_of(user)
    return Subject.objects.filter(dataset__organisation=org).annotate(sample_count=Count("samples"))


def samples_of(user):
    org = organisation_of(user)
    return Sample.objects.filter(dataset__organisation=org).select_related("subject")
