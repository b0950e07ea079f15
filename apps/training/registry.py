"""The model registry: the shipped model, versions made by fine-tune jobs, promotion,
and which model files a device may download."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.text import slugify

from apps.accounts.access import audit, role_of
from apps.accounts.models import Role

from .models import Deployment, ModelVersion

SHIPPED_DIR = Path(settings.BASE_DIR) / "edge_agent" / "models"
SHIPPED_ONNX = "liexnet-fer2013.onnx"


def artifact_path(name: str) -> Path:
    """The file behind a ModelVersion's onnx_file / weights_file / card_file."""
    if name.startswith("shipped:"):
        return SHIPPED_DIR / name.removeprefix("shipped:")
    return Path(settings.MEDIA_ROOT) / name


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_metadata(path: Path) -> dict:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def shipped_version() -> ModelVersion | None:
    """The registry row of edge_agent/models/liexnet-fer2013.onnx (made on first use, and
    refreshed when the file changes); None when the file is not there."""
    from edge_agent.classifier import ModelError, read_metadata

    onnx_path = SHIPPED_DIR / SHIPPED_ONNX
    if not onnx_path.is_file():
        return None
    digest = sha256_of(onnx_path)
    existing = ModelVersion.objects.filter(organisation=None, onnx_file=f"shipped:{SHIPPED_ONNX}").first()
    if existing and existing.sha256 == digest:
        return existing
    meta = onnx_metadata(onnx_path)
    try:
        labels, spec, arch, version = read_metadata(meta, onnx_path)
    except ModelError:
        return None
    card_path = onnx_path.with_suffix(".json")
    card = {}
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text())
        except ValueError:
            card = {}
    name, _, number = version.partition("@")
    card = card if isinstance(card, dict) else {}
    fields = dict(
        version=version, name=name, number=int(number) if number.isdigit() else 1, arch=arch, labels=list(labels),
        preprocess=spec.to_dict(), dataset_name=meta.get("affectwatch.dataset", "fer2013"),
        metrics=_card_metrics(card), hyperparameters={**(card.get("protocol") or {}), **(card.get("model_config") or {})},
        onnx_file=f"shipped:{SHIPPED_ONNX}", card_file=f"shipped:{card_path.name}" if card_path.is_file() else "",
        sha256=digest, size=onnx_path.stat().st_size, status=ModelVersion.Status.PROMOTED,
    )
    with transaction.atomic():
        if existing:
            for k, v in fields.items():
                setattr(existing, k, v)
            existing.save()
            return existing
        obj, _ = ModelVersion.objects.update_or_create(version=version, defaults={**fields, "organisation": None})
        return obj


def card_of(version: ModelVersion) -> dict | None:
    """The version's model card (JSON), or None when it has none or it does not parse."""
    path = artifact_path(version.card_file) if version.card_file else None
    if path is None or not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except ValueError:
        return None
    return card if isinstance(card, dict) else None


def _card_metrics(card: dict) -> dict:
    """The shipped card's headline figures under the names fine-tuned versions use
    (3-class figures: what boards stream), with the card's full metrics kept."""
    head = card.get("headline") or {}
    out = {"details": card.get("metrics", {})}
    test = (card.get("metrics") or {}).get("PrivateTest") or {}
    out["test_set"] = (f"FER2013 PrivateTest ({test['n']:,} images of the public FER2013 set, 7 classes grouped "
                       "to valence): not the subjects of your data sets" if test.get("n") else "FER2013 PrivateTest")
    for key, src in (("accuracy", "privatetest_accuracy_3class"), ("negative_recall", "privatetest_negative_recall"),
                     ("accuracy_7class", "privatetest_accuracy_7class"), ("macro_f1_7class", "privatetest_macro_f1")):
        if head.get(src) is not None:
            out[key] = head[src]
    return out


def versions_for(org):
    """What an organisation sees in the registry: its own versions and the shipped ones."""
    shipped_version()
    return ModelVersion.objects.filter(Q(organisation=org) | Q(organisation=None)).select_related("base", "dataset")


def next_version_name(org, dataset) -> tuple[str, int]:
    name = slugify(f"{org.slug}-{dataset.name}")[:80] or f"org{org.id}-dataset{dataset.id}"
    top = ModelVersion.objects.filter(name=name).aggregate(n=Max("number"))["n"] or 0
    return name, top + 1


class Blocked(ValueError):
    """A version with blockers (quality gate, withdrawn subjects) used without an override."""


def require_usable(version: ModelVersion, user, override: str = "", action: str = "promoted") -> None:
    """Return when `version` may be promoted / deployed; else raise Blocked with its
    blockers. An organisation admin may override with a reason: the override is noted on
    the version and in the audit log."""
    blockers = version.blockers
    if not blockers:
        return
    override = (override or "").strip()
    refusal = f"{version.version} cannot be {action}: " + "; ".join(blockers) + "."
    if not override:
        raise Blocked(refusal)
    if role_of(user) != Role.ADMIN:
        raise Blocked(refusal + " Only an administrator may override this.")
    note = f"{timezone.now():%Y-%m-%d %H:%M} UTC, {user}: {action} despite: {'; '.join(blockers)}. Reason: {override}"
    version.override_note = "\n".join(filter(None, [version.override_note, note]))[-4000:]
    version.save(update_fields=["override_note"])
    audit(user, "model.override", version.version, organisation=version.organisation, use=action,
          blockers=blockers, reason=override[:500])


def promote(version: ModelVersion, user, override: str = "") -> ModelVersion:
    """Mark `version` as the organisation's recommended model (one promoted per name).
    Raises Blocked for a version with blockers and no admin override."""
    with transaction.atomic():
        require_usable(version, user, override, "promoted")
        demoted = ModelVersion.objects.filter(organisation=version.organisation, name=version.name,
                                              status=ModelVersion.Status.PROMOTED).exclude(pk=version.pk)
        demoted.filter(rejected_reasons=[]).update(status=ModelVersion.Status.CANDIDATE)
        demoted.update(status=ModelVersion.Status.REJECTED)  # promoted by an override: rejected it stays
        version.status = ModelVersion.Status.PROMOTED
        version.promoted_at, version.promoted_by = timezone.now(), user
        version.save(update_fields=["status", "promoted_at", "promoted_by"])
        audit(user, "model.promote", version.version, organisation=version.organisation)
    return version


def downloadable_by(device, version: str) -> ModelVersion | None:
    """The version a device may download: a shipped model, or one of its organisation's
    versions that has been deployed to that organisation's sites."""
    shipped_version()
    mv = ModelVersion.objects.filter(version=version).first()
    if mv is None:
        return None
    if mv.organisation_id is None:
        return mv
    if mv.organisation_id != device.organisation_id:
        return None
    if not Deployment.objects.filter(organisation_id=device.organisation_id, model_version=mv).exists():
        return None
    return mv
