"""Research pages: the overview, fine-tune jobs and their results, the model registry
and deployments. Thin views over the same services the API uses."""
import json
import mimetypes
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render

from apps.accounts.access import chosen, organisation_of, role_of, visible_sites
from apps.accounts.errors import sentences
from apps.accounts.models import Role
from apps.datasets.access import datasets_of
from apps.datasets.views import research_required
from apps.sites.models import Device

from . import jobs, registry, rollout
from .models import Deployment, FineTuneJob


def _jobs(user):
    return FineTuneJob.objects.filter(organisation=organisation_of(user)).select_related(
        "dataset", "model_version", "base")


@research_required
def home(request):
    org = organisation_of(request.user)
    jobs.reap_stale_jobs(_jobs(request.user))
    return render(request, "training/home.html", {
        "datasets": datasets_of(request.user),
        "jobs": _jobs(request.user)[:20],
        "versions": registry.versions_for(org)[:30],
        "deployments": Deployment.objects.filter(organisation=org, site__in=visible_sites(request.user))
        .select_related("site", "model_version", "canary")[:20],
    })


FORM_SESSION_KEY = "finetune_form"
#: The fine-tune form's fields: all that is read from the POST, and kept for the page.
FORM_FIELDS = ("base", "epochs", "lr", "batch_size", "w", "sweep", "seed", "split", "test_fraction", "val_fraction",
               "folds", "select", "augment")


@research_required
def start_job(request, dataset_id):
    """Start a fine-tune from the data set page's form. On an error the page comes back
    with what the user typed and the errors as sentences."""
    dataset = get_object_or_404(datasets_of(request.user), pk=dataset_id)
    if request.method != "POST":
        return redirect("research:dataset", dataset.pk)
    typed = {k: request.POST[k][:200] for k in FORM_FIELDS if k in request.POST}
    data = {k: v for k, v in typed.items() if v != "" and k not in ("base", "sweep")}
    sweep = typed.get("sweep", "").strip()
    if sweep:
        data.pop("w", None)
        data["worker_weights"] = [s.strip() for s in sweep.replace(";", ",").split(",") if s.strip()]
    data["augment"] = typed.get("augment") == "on"
    params = jobs.FineTuneParamsSerializer(data=data)
    errors = sentences(params.errors) if not params.is_valid() else sentences(
        jobs.check_dataset(dataset, dict(params.validated_data)))
    base = chosen(registry.versions_for(dataset.organisation), typed.get("base"))
    if typed.get("base") and base is None:
        errors.append("base: unknown model version")
    if errors:
        request.session[FORM_SESSION_KEY] = {"dataset": dataset.pk, "values": typed}
        for line in errors:
            messages.error(request, line)
        return redirect("research:dataset", dataset.pk)
    job = jobs.start(dataset, dict(params.validated_data), request.user, base)
    return redirect("research:job", job.pk)


@research_required
def job_detail(request, job_id):
    job = jobs.reap_if_stale(get_object_or_404(_jobs(request.user), pk=job_id))
    results = job.results or {}
    runs = results.get("runs", [])
    chosen_run = next((r for r in runs if r["w"] == results.get("best_w")), None)
    test = results.get("test") or chosen_run  # jobs from before validation subjects scored test per w
    base = results.get("base") or {}
    base_test = base.get("test", base if "accuracy" in base else None)
    worse = [name for name, key in (("accuracy", "accuracy"), ("negative recall", "negative_recall"), ("AUC", "auc"))
             if test and base_test and test.get(key) is not None and base_test.get(key) is not None
             and test[key] < base_test[key]]
    return render(request, "training/job.html", {
        "job": job, "runs": runs, "chosen": chosen_run, "test": test, "base_val": base.get("validation"),
        "base_test": base_test, "splits": results.get("splits", []), "rejected": results.get("rejected", []),
        "worse_than_base": worse,
        "figures": {"roc": test["roc"] if test else {}, "confusion": test["confusion_matrix"] if test else [],
                    "history": job.history, "labels": ["negative", "neutral", "positive"]},
    })


@research_required
def cancel_job(request, job_id):
    job = get_object_or_404(_jobs(request.user), pk=job_id)
    if request.method == "POST":
        jobs.cancel(job, request.user)
        messages.info(request, "Cancel requested; the worker stops after the current batch.")
    return redirect("research:job", job.pk)


@research_required
def version_detail(request, version_id):
    org = organisation_of(request.user)
    mv = get_object_or_404(registry.versions_for(org), pk=version_id)
    sites = visible_sites(request.user).prefetch_related("devices")
    deployments = Deployment.objects.filter(model_version=mv, organisation=org,
                                            site__in=visible_sites(request.user)).select_related("site", "canary")
    card = registry.card_of(mv)
    for dep in deployments:  # where each board of the site stands
        dep.boards = [{"name": d.name, "runs": d.model_version or "—", "asked": d.desired_model_version,
                       "canary": d.pk == dep.canary_id, "online": d.online}
                      for d in Device.objects.filter(site=dep.site, revoked_at__isnull=True)]
    return render(request, "training/version.html", {
        "mv": mv, "sites": sites, "deployments": deployments, "job": mv.jobs.first(),
        "is_admin": role_of(request.user) == Role.ADMIN,
        "card": json.dumps(card, indent=1) if card else None,
    })


COMPARED_METRICS = (("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy"),
                    ("negative_recall", "Negative recall"), ("auc", "AUC (macro)"), ("macro_f1", "Macro F1"),
                    ("pearson_r", "Pearson r"))


@research_required
def compare_versions(request):
    """Two model versions side by side: test set, metrics (with the difference),
    hyper-parameters and the data each was trained on."""
    org = organisation_of(request.user)
    ids = request.GET.getlist("v")[:2]
    versions = [chosen(registry.versions_for(org), i) for i in ids]
    if len(ids) != 2 or None in versions:
        messages.error(request, "Tick two model versions of your registry to compare them.")
        return redirect("research:home")
    a, b = versions
    metrics = []
    for key, label in COMPARED_METRICS:
        va, vb = a.metrics.get(key), b.metrics.get(key)
        diff = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        metrics.append({"label": label, "a": va, "b": vb, "diff": diff})
    keys = sorted(set(a.hyperparameters) | set(b.hyperparameters))
    hyper = [{"key": k, "a": a.hyperparameters.get(k, "—"), "b": b.hyperparameters.get(k, "—"),
              "differs": a.hyperparameters.get(k) != b.hyperparameters.get(k)} for k in keys]
    data = [((registry.card_of(mv) or {}).get("dataset") or {}) for mv in (a, b)]
    return render(request, "training/compare.html", {
        "a": a, "b": b, "metrics": metrics, "hyper": hyper, "data_a": data[0], "data_b": data[1],
        "same_test_set": a.metrics.get("test_set") == b.metrics.get("test_set"),
    })


@research_required
def promote_version(request, version_id):
    mv = get_object_or_404(registry.versions_for(organisation_of(request.user)), pk=version_id)
    if request.method == "POST" and not mv.shipped:
        try:
            registry.promote(mv, request.user, request.POST.get("override", "")[:500])
            messages.success(request, f"{mv.version} is now the promoted version of {mv.name}.")
        except registry.Blocked as exc:
            messages.error(request, str(exc))
    return redirect("research:version", mv.pk)


@research_required
def deploy_version(request, version_id):
    mv = get_object_or_404(registry.versions_for(organisation_of(request.user)), pk=version_id)
    if request.method == "POST":
        site = chosen(visible_sites(request.user), request.POST.get("site"))
        canary = None
        if request.POST.get("canary"):
            canary = chosen(Device.objects.all(), request.POST["canary"], site=site) if site else None
        if site is None:
            messages.error(request, "Choose a site.")
        elif request.POST.get("canary") and canary is None:
            messages.error(request, "The canary board must be at the chosen site.")
        else:
            try:
                dep = rollout.deploy(mv, site, request.user, canary, request.POST.get("override", "")[:500])
                messages.success(request, f"Deploying {mv.version} to {site.name}: canary {dep.canary.name} first.")
            except rollout.RolloutError as exc:
                messages.error(request, str(exc))
    return redirect("research:version", mv.pk)


@research_required
def rollback_deployment(request, deployment_id):
    org = organisation_of(request.user)
    dep = get_object_or_404(Deployment.objects.filter(organisation=org, site__in=visible_sites(request.user)),
                            pk=deployment_id)
    if request.method == "POST":
        try:
            rollout.rollback(dep, request.user)
            messages.success(request, f"Rolled back {dep.model_version.version} at {dep.site.name}.")
        except rollout.RolloutError as exc:
            messages.error(request, str(exc))
    return redirect("research:version", dep.model_version_id)


@research_required
def artifact(request, path):
    """Files a job wrote (Grad-CAM pictures), for the job's organisation only."""
    org = organisation_of(request.user)
    prefix = f"training/{org.pk}/"
    if not path.startswith(prefix) or ".." in Path(path).parts:
        raise Http404()
    full = Path(settings.MEDIA_ROOT) / path
    if not full.is_file():
        raise Http404()
    return FileResponse(open(full, "rb"), content_type=mimetypes.guess_type(full.name)[0] or "application/octet-stream")
