"""Research pages for data sets: list, import, subjects and consent, gallery."""
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from apps.accounts.access import audit, organisation_of, role_of

from . import importer, services
from .access import RESEARCH_ROLES, datasets_of
from .models import Dataset, Label, Subject

GALLERY_PAGE = 48


def research_required(view):
    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if role_of(request.user) not in RESEARCH_ROLES:
            raise PermissionDenied("research pages are for researchers and admins")
        return view(request, *args, **kwargs)

    return wrapped


@research_required
def create_dataset(request):
    if request.method != "POST":
        return redirect("research:home")
    name = request.POST.get("name", "").strip()[:120]
    org = organisation_of(request.user)
    if not name:
        messages.error(request, "A data set needs a name.")
    elif Dataset.objects.filter(organisation=org, name=name).exists():
        messages.error(request, f"A data set named {name} exists already.")
    else:
        ds = Dataset.objects.create(organisation=org, name=name, description=request.POST.get("description", ""),
                                    created_by=request.user)
        audit(request, "dataset.create", ds)
        return redirect("research:dataset", ds.pk)
    return redirect("research:home")


@research_required
def dataset_detail(request, dataset_id):
    from apps.training.models import FineTuneJob
    from apps.training.registry import versions_for

    dataset = get_object_or_404(datasets_of(request.user), pk=dataset_id)
    samples = dataset.samples.select_related("subject").order_by("id")
    f = {k: request.GET.get(k, "") for k in ("label", "worker", "subject")}
    if f["label"] in Label.values:
        samples = samples.filter(label=f["label"])
    if f["worker"] in ("1", "0"):
        samples = samples.filter(subject__is_worker=f["worker"] == "1")
    if f["subject"]:
        samples = samples.filter(subject__code=f["subject"])
    page = Paginator(samples, GALLERY_PAGE).get_page(request.GET.get("page"))
    split, split_error = None, None
    if dataset.samples.exists():
        from workers.finetune import FinetuneError

        from .splits import split_preview

        try:
            split = split_preview(dataset)[0]
        except FinetuneError as exc:
            split_error = str(exc)
    query = "&".join(f"{k}={v}" for k, v in f.items() if v)
    form = request.session.pop("finetune_form", None)  # what the user typed before an error
    return render(request, "datasets/detail.html", {
        "form": form["values"] if form and form.get("dataset") == dataset.pk else None,
        "accepted_imports": dataset.imports.filter(status="accepted")[:10],
        "dataset": dataset, "page": page, "filters": f, "query": query, "labels": Label.choices,
        "subjects": dataset.subjects.all(), "imports": dataset.imports.all()[:5],
        "last_import": dataset.imports.first(), "split": split, "split_error": split_error,
        "counts": {lab: dataset.samples.filter(label=lab).count() for lab in Label.values},
        "jobs": FineTuneJob.objects.filter(dataset=dataset)[:10],
        "bases": versions_for(dataset.organisation).exclude(weights_file="", organisation__isnull=False),
        "today": timezone.now().date().isoformat(),
    })


@research_required
def import_upload(request, dataset_id):
    dataset = get_object_or_404(datasets_of(request.user), pk=dataset_id)
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            messages.error(request, "Choose a zip file to import.")
        else:
            record = importer.import_zip(dataset, upload, request.user)
            audit(request, "dataset.import", dataset, status=record.status, accepted=record.accepted,
                  rejected=len(record.errors))
            if record.status == record.Status.ACCEPTED:
                messages.success(request, f"Imported {record.accepted} images from {record.filename}.")
            else:
                messages.error(request, f"{record.filename} was not imported: {len(record.errors)} problem(s), "
                                        "listed below. Nothing was stored.")
    return redirect("research:dataset", dataset.pk)


@research_required
def add_subject(request, dataset_id):
    dataset = get_object_or_404(datasets_of(request.user), pk=dataset_id)
    if request.method == "POST":
        code = request.POST.get("code", "").strip()[:64]
        scope = request.POST.get("consent_scope", "").strip()[:300]
        raw = request.POST.get("consent_given_at", "").strip()
        given = parse_datetime(raw) or (parse_date(raw) and timezone.make_aware(
            timezone.datetime.combine(parse_date(raw), timezone.datetime.min.time())))
        if not code or not scope or not given:
            messages.error(request, "A subject needs a code, the date consent was given and its scope.")
        elif given > timezone.now():
            messages.error(request, "Consent cannot be given in the future.")
        elif dataset.subjects.filter(code=code).exists():
            messages.error(request, f"Subject {code} exists already.")
        else:
            s = Subject.objects.create(dataset=dataset, code=code, is_worker=request.POST.get("is_worker") == "1",
                                       consent_given_at=given, consent_scope=scope, consent_recorded_by=request.user,
                                       consent_recorded_at=timezone.now())
            audit(request, "subject.consent", s, dataset=dataset.pk, scope=scope)
            messages.success(request, f"Consent of {code} recorded.")
    return redirect("research:dataset", dataset.pk)


@research_required
def withdraw_consent(request, dataset_id, subject_id):
    dataset = get_object_or_404(datasets_of(request.user), pk=dataset_id)
    subject = get_object_or_404(dataset.subjects, pk=subject_id)
    if request.method == "POST":
        done = services.withdraw_consent(subject, request)
        marked = f"; marked {', '.join(done['marked'])}" if done["marked"] else ""
        messages.success(request, f"Consent of {subject.code} withdrawn; {done['deleted_samples']} image(s) and "
                                  f"{len(done['deleted_files'])} derived picture(s) deleted{marked}.")
    return redirect("research:dataset", dataset.pk)
