"""The fine-tune's domain steps, for the Celery task (`tasks.run_finetune`) to call:
pick the base model, load the job's consented images, train through
`workers.finetune`, and export, check and describe what it trained. The job's state
(claimed, progress, registered, failed) is kept by `jobs`; nothing here changes it
except through `jobs.report_progress`.

Torch is imported inside the functions so that a worker's parent process, which imports
this module, never holds it (forking after OpenMP starts is unsafe)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from django.conf import settings

from .models import FineTuneJob, ModelVersion

GRADCAM_IMAGES = 12


class Cancelled(Exception):
    """The job's cancel was requested while it trained."""


@dataclass
class Trained:
    """What a fine-tune produced, with everything its registration describes."""

    result: Any  # workers.finetune.FinetuneResult
    base: Any  # workers.finetune.BaseModel
    base_version: ModelVersion | None
    params: Any  # workers.finetune.FinetuneParams
    images: Any
    labels: Any
    is_worker: Any
    subjects: Any
    seconds: float


@dataclass
class Artifacts:
    """The files of one exported version (paths absolute) and what the registry records."""

    onnx: Path
    weights: Path
    card: Path
    sha256: str
    gallery: list[dict]
    metrics: dict
    hyperparameters: dict = field(default_factory=dict)


def base_of(job: FineTuneJob):
    """(workers.finetune.BaseModel, its registry version or None): the job's base, else
    the shipped model, with the weights its registry entry or model card names."""
    from workers import finetune as ft

    from .registry import artifact_path, shipped_version

    base_version = job.base or shipped_version()
    if job.base and job.base.weights_file:
        return ft.load_base(artifact_path(job.base.weights_file)), base_version
    card = {"preprocess": base_version.preprocess, "labels": base_version.labels} if base_version else None
    if base_version and base_version.card_file and artifact_path(base_version.card_file).is_file():
        try:
            card = {**json.loads(artifact_path(base_version.card_file).read_text()), **card}
        except ValueError:
            pass
    return ft.load_base(card=card), base_version


def load_data(job: FineTuneJob, spec):
    """(images, labels, is_worker, subjects) as arrays: the job's data set, decoded with
    the base model's preprocessing, leaving out subjects who withdrew consent since the
    import. Raises ValueError when an image no longer decodes or none is left."""
    import numpy as np

    from edge_agent.labels import VALENCE_CLASSES
    from workers.data.decode import decode_image

    images, labels, workers, subjects = [], [], [], []
    for s in job.dataset.samples.select_related("subject").order_by("id"):
        if not s.subject.has_consent:
            continue
        with s.image.open("rb") as f:
            img = decode_image(f.read(), spec)
        if img is None:
            raise ValueError(f"sample {s.pk} ({s.original_name}) no longer decodes")
        images.append(img)
        labels.append(VALENCE_CLASSES.index(s.label))
        workers.append(s.subject.is_worker)
        subjects.append(s.subject.code)
    if not images:
        raise ValueError("the data set has no images with consent")
    return np.stack(images), np.array(labels), np.array(workers, dtype=bool), np.array(subjects)


def train(job: FineTuneJob, log_line: Callable[[str], None], should_stop: Callable[[], bool],
          on_progress: Callable[[dict], None]) -> Trained:
    """Fine-tune the job's base on its data with its options. Raises Cancelled when
    `should_stop` turns true (during training or right after it)."""
    import torch

    from workers import finetune as ft

    threads = settings.AFFECTWATCH["TRAINING_THREADS"]
    if threads:
        torch.set_num_threads(threads)
    base, base_version = base_of(job)
    log_line(f"base model: {base_version.version if base_version else 'LiExNet'} (weights: {base.source})")
    params = ft.FinetuneParams(**job.params)
    images, labels, is_worker, subjects = load_data(job, base.spec)
    log_line(f"{len(images)} images of {len(set(subjects))} subjects ({int(is_worker.sum())} images of workers)")
    t0 = time.time()
    try:
        result = ft.finetune(images, labels, is_worker, subjects, base, params, on_progress=on_progress,
                             should_stop=should_stop, log_fn=log_line)
    except ft.Cancelled:
        raise Cancelled() from None
    if should_stop():
        raise Cancelled()
    seconds = time.time() - t0
    log_line(f"trained in {seconds:.1f}s; w = {result.best_w} chosen on validation subjects")
    for reason in result.rejected:
        log_line(f"quality gate: {reason}")
    return Trained(result, base, base_version, params, images, labels, is_worker, subjects, seconds)


def export(job: FineTuneJob, trained: Trained, version: str) -> Artifacts:
    """Write the trained model as `version` under the job's artifact folder: the ONNX file
    (checked against torch and loaded exactly as a board loads it), the torch weights, a
    Grad-CAM gallery of subjects it never trained on, and its model card."""
    from django.utils import timezone

    from edge_agent.classifier import load_model
    from edge_agent.labels import VALENCE_CLASSES
    from workers import finetune as ft
    from workers.export import parity_check
    from workers.gradcam import save_gallery

    from .registry import sha256_of

    result, base, dataset = trained.result, trained.base, job.dataset
    rel = job.artifact_dir
    out = Path(settings.MEDIA_ROOT) / rel
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = ft.export(result.model, out / "model.onnx", base, version, dataset.name)
    parity = parity_check(result.model, onnx_path, base.spec, trained.images[:32])
    clf = load_model(onnx_path)  # exactly what a board does before it swaps a model in
    if list(clf.labels) != list(VALENCE_CLASSES):
        raise ValueError(f"exported model has labels {clf.labels}")
    weights_path = ft.save_weights(result.model, out / "weights.pt", base, trained.params,
                                   {"dataset": dataset.name, "version": version, "base": base.source})

    # Grad-CAM on images the registered model never trained on: the holdout's test
    # subjects, or the validation subjects of the model trained after k-fold.
    last = result.splits[-1]
    shown = last["test_subjects"] or last["val_subjects"]
    cam_idx = gallery_indices(shown, trained.subjects, trained.labels, GRADCAM_IMAGES)
    gallery = save_gallery(result.model, trained.images[cam_idx], trained.labels[cam_idx], VALENCE_CLASSES,
                           base.spec, out / "gradcam", GRADCAM_IMAGES)
    for item, i in zip(gallery, cam_idx):  # the subject, so a withdrawal finds their pictures
        item["file"], item["subject"] = f"{rel}/gradcam/{item['file']}", str(trained.subjects[i])

    metrics = _metrics(result, trained.params, parity)
    hyper = {**job.params, "chosen_w": result.best_w}
    digest = sha256_of(onnx_path)
    base_version = trained.base_version
    card_path = ft.write_card(
        out / "card.json", version=version, arch=base.arch, labels=list(VALENCE_CLASSES),
        preprocess=base.spec.to_dict(), base_model=base_version.version if base_version else None,
        base_weights=base.source, dataset={"id": dataset.pk, "name": dataset.name, "images": int(len(trained.images)),
                                           "subjects": int(len(set(trained.subjects))),
                                           "worker_images": int(trained.is_worker.sum())},
        hyperparameters=hyper, metrics=metrics,
        sweep_on_validation=[{k: r[k] for k in ("w", "accuracy", "negative_recall", "auc", "macro_f1", "pearson_r")}
                             for r in result.runs],
        quality_gate={"passed": not result.rejected, "reasons": result.rejected},
        splits=result.splits, training_seconds=round(trained.seconds, 1), job=job.pk, sha256=digest,
        created_at=timezone.now().isoformat(),
        intended_use="3-class valence (negative / neutral / positive) of face crops for aggregate, "
                     "privacy-preserving stress monitoring; not for judging individuals.",
    )
    return Artifacts(onnx_path, weights_path, card_path, digest, gallery, metrics, hyper)


def _metrics(result, params, parity) -> dict:
    """The registry's metrics of a trained version: its test scores, the chosen w's
    validation scores, and what its test set was, in words."""
    test = result.test
    metrics = {k: test[k] for k in ("accuracy", "balanced_accuracy", "negative_recall", "auc", "macro_f1",
                                    "pearson_r", "accuracy_std")}
    chosen = next(r for r in result.runs if r["w"] == result.best_w)
    tested = sorted({s for sp in result.splits for s in sp["test_subjects"]})
    n_test = sum(sp["n_test"] for sp in result.splits)
    metrics.update({
        "w": result.best_w, "base": result.base, "onnx_parity": parity,
        "validation": {k: chosen[k] for k in ("accuracy", "balanced_accuracy", "negative_recall", "auc", "macro_f1")},
        "test_subjects": tested,
        "test_set": (f"a {len(result.splits) - 1}-fold estimate: each of {n_test:,} "
                     f"images of subjects {', '.join(tested)} scored once by the fold's model that never saw it; "
                     "this version was then trained on all subjects, so no held-out score of it exists"
                     if params.split == "kfold" else
                     f"{n_test:,} images of test subjects {', '.join(tested)}, "
                     "scored once after every choice was made on validation subjects"),
    })
    return metrics


def gallery_indices(shown_subjects, subjects, labels, limit):
    """Up to `limit` image indices of `shown_subjects`, a few of each class first."""
    import numpy as np

    idx = np.flatnonzero(np.isin(subjects, shown_subjects))
    picked, per_class = [], max(1, limit // 3)
    for c in range(3):
        picked += list(idx[labels[idx] == c][:per_class])
    rest = [i for i in idx if i not in set(picked)]
    return np.array((picked + rest)[:limit], dtype=np.int64)
