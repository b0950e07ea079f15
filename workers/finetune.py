"""Worker-weighted fine-tuning of a trained LiExNet on a consented 3-class data set
(EMOTION-ITCH style), as the LiExNet paper does it.

The loss is the weighted cross-entropy of the paper,

    L = −(1/N) Σᵢ wᵢ Σ_d y_{i,d} log p_{i,d},   wᵢ = w for working subjects, 1 otherwise,

which is `workers.training.losses.weighted_cross_entropy` fed with `sample_weights`.
Training is `workers.training.loop.fit`, scoring `workers.evaluation.evaluate_logits`,
export `workers.export.export_onnx`: this module only splits by subject, swaps the
head, loops over the requested w values and folds, and keeps what a registry needs.

Nothing here knows about Django or Celery; `apps.training.tasks` feeds it arrays and
callbacks.
"""
from __future__ import annotations

import copy
import json
import math
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from edge_agent.classifier import softmax
from edge_agent.labels import VALENCE_CLASSES, valence_matrix
from edge_agent.preprocess import PreprocessSpec

from .evaluation import evaluate_logits
from .models import replace_head as _replace_head
from .models.checkpoint import build_model, has_arch, read_checkpoint, save_checkpoint
from .predict import predict_logits
from .training.augment import AugmentConfig
from .training.loop import TrainConfig, fit

log = logging.getLogger(__name__)

EDGE_MODELS = Path(__file__).resolve().parent.parent / "edge_agent" / "models"
DEFAULT_MODEL_ONNX = EDGE_MODELS / "liexnet-fer2013.onnx"
# Where the torch weights of the shipped model may be, best first. The ONNX file cannot
# be trained, so fine-tuning starts from these; without any, LiExNet is built fresh.
DEFAULT_WEIGHTS_CANDIDATES = (
    EDGE_MODELS / "liexnet-fer2013.pt",
    EDGE_MODELS / "liexnet-fer2013.best.pt",
    Path(__file__).resolve().parent.parent / "runs" / "liexnet-fer2013" / "best.pt",
)


class FinetuneError(RuntimeError):
    pass


class Cancelled(Exception):
    pass


@dataclass
class FinetuneParams:
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 32
    worker_weights: list[float] = field(default_factory=lambda: [2.0])  # one value, or a sweep
    seed: int = 0
    split: str = "holdout"  # holdout (the paper's 60 / 40 by subject) | kfold
    test_fraction: float = 0.4
    val_fraction: float = 0.25  # of each training side's subjects, for every choice
    folds: int = 5
    select: str = "accuracy"  # the validation metric that picks the w of a sweep: accuracy | negative_recall | auc
    augment: bool = True

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
            weight_decay=1e-4, augment=AugmentConfig() if self.augment else AugmentConfig.off(),
        )


# --- the loss's weights ---------------------------------------------------------------

def sample_weights(is_worker, w: float) -> np.ndarray:
    """wᵢ = w for a working subject's image, 1 for everyone else's."""
    is_worker = np.asarray(is_worker, dtype=bool)
    return np.where(is_worker, np.float32(w), np.float32(1.0)).astype(np.float32)


# --- splits by subject ----------------------------------------------------------------

@dataclass(frozen=True)
class SubjectSplit:
    """Indices of one split; no subject is on two sides. Training fits the weights,
    validation picks the epoch, w and the quality gate's verdict, test is scored once for
    the chosen model."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _carve_validation(idx: np.ndarray, subjects: np.ndarray, labels: np.ndarray, fraction: float,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) from the training side `idx`: `fraction` of its subjects (at
    least one, at most all but one) hold out for validation."""
    from sklearn.model_selection import GroupShuffleSplit

    groups = subjects[idx]
    n = len(np.unique(groups))
    if n < 2:
        raise FinetuneError("the training side has one subject; validation subjects are carved from it, "
                            "so the data set needs more subjects (or a smaller test fraction)")
    n_val = min(n - 1, max(1, round(fraction * n)))
    # The validation side judges the model, so it should hold every class the training
    # side has: the first of a few carves that does (else the last one tried).
    wanted = set(np.unique(labels[idx]).tolist())
    for attempt in range(50):
        gss = GroupShuffleSplit(n_splits=1, test_size=n_val, random_state=seed + attempt)
        tr, va = next(gss.split(idx, labels[idx], groups=groups))
        if set(np.unique(labels[idx][va]).tolist()) == wanted:
            break
    return idx[tr], idx[va]


def subject_splits(subjects, labels, mode: str = "holdout", test_fraction: float = 0.4, folds: int = 5,
                   seed: int = 0, val_fraction: float = 0.25) -> list[SubjectSplit]:
    """Train / validation / test splits in which no subject is on two sides.

    holdout: one split with `test_fraction` of the subjects on the test side;
    kfold: every subject is tested exactly once (label-stratified where it can be).
    Either way `val_fraction` of each training side's subjects become its validation
    subjects, so every choice is made inside the fold (Varma & Simon 2006, nested
    cross-validation). Raises FinetuneError when there are too few subjects."""
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    subjects = np.asarray(subjects).astype(str)
    labels = np.asarray(labels)
    n_subjects = len(np.unique(subjects))
    if mode == "holdout":
        n_test = math.ceil(test_fraction * n_subjects)  # as GroupShuffleSplit counts it
        if n_subjects - n_test < 2 or n_test < 1:
            raise FinetuneError(
                f"a test share of {test_fraction:g} of {n_subjects} subjects leaves {n_subjects - n_test} for training "
                "and validation; at least 2 are needed (add subjects or lower the test share)")
        gss = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
        pairs = [next(gss.split(subjects, labels, groups=subjects))]
    elif mode == "kfold":
        if n_subjects < folds + 1:
            raise FinetuneError(f"{folds}-fold cross-validation with validation subjects needs at least "
                                f"{folds + 1} subjects, the data set has {n_subjects}")
        sgkf = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        pairs = list(sgkf.split(subjects, labels, groups=subjects))
    else:
        raise FinetuneError(f"unknown split {mode!r}; choose holdout or kfold")
    out = []
    for tr, te in pairs:
        tr, va = _carve_validation(np.asarray(tr), subjects, labels, val_fraction, seed)
        out.append(SubjectSplit(np.sort(tr), np.sort(va), np.asarray(te)))
    return out


def final_split(subjects, labels, val_fraction: float = 0.25, seed: int = 0) -> SubjectSplit:
    """Every image for the model registered after k-fold cross-validation: validation
    subjects (for the epoch) carved from all of them, nothing left to test."""
    subjects = np.asarray(subjects).astype(str)
    tr, va = _carve_validation(np.arange(len(subjects)), subjects, np.asarray(labels), val_fraction, seed)
    return SubjectSplit(np.sort(tr), np.sort(va), np.array([], dtype=np.int64))


# --- the base model -------------------------------------------------------------------

@dataclass
class BaseModel:
    """A trained network to start from, with what is needed to rebuild and describe it."""

    arch: str
    model_config: dict
    state_dict: dict | None
    classes: tuple[str, ...]
    spec: PreprocessSpec
    source: str  # where the weights came from, for the lineage
    # The calibration temperature fitted when it shipped (1 when none): the base model is
    # scored on logits / T, the probabilities the agent decides on.
    temperature: float = 1.0

    def build(self) -> nn.Module:
        """The network, rebuilt from the registry with its weights (fresh when none)."""
        return build_model(self.arch, self.model_config, self.state_dict)


def load_base(weights: str | Path | None = None, card: dict | None = None) -> BaseModel:
    """The model a fine-tune starts from: a checkpoint written by `fit` (best.pt / last.pt
    or a registry's weights.pt); else the shipped model's weights (where its model card's
    `weights` / `checkpoint` key points, or the usual places); else a fresh LiExNet from
    the registry (the lineage then says so)."""
    card = card or {}
    named = [card.get(k) for k in ("weights", "checkpoint", "torch_weights") if isinstance(card.get(k), str)]
    candidates = [Path(weights)] if weights else [
        p if p.is_absolute() else EDGE_MODELS / p for p in map(Path, named)] + list(DEFAULT_WEIGHTS_CANDIDATES)
    for path in candidates:
        if path.is_file():
            ck = read_checkpoint(path)
            if not has_arch(ck):
                continue
            meta = ck["meta"]
            return BaseModel(
                arch=meta["arch"], model_config=dict(meta.get("model_config", {})), state_dict=ck["model"],
                classes=tuple(meta.get("classes", ())), spec=PreprocessSpec.from_dict(meta.get("preprocess", {})),
                source=str(path), temperature=float(meta.get("temperature", 1.0)),
            )
        if weights:
            raise FinetuneError(f"base weights {path} not found")
    spec = PreprocessSpec.from_dict(card["preprocess"]) if "preprocess" in card else PreprocessSpec()
    classes = tuple(card.get("labels") or card.get("classes") or ())
    if not classes:
        from edge_agent.labels import FER2013_CLASSES

        classes = FER2013_CLASSES
    config = dict(num_classes=len(classes), in_channels=spec.channels, input_size=list(spec.size))
    return BaseModel("liexnet", config, None, classes, spec, "registry:liexnet (no trained weights found)")


def replace_head(model: nn.Module, num_classes: int, seed: int = 0) -> nn.Module:
    """Swap the network's classifier head for a fresh one with `num_classes` outputs,
    through its own `reset_classifier` hook (`workers.models.replace_head`). Raises
    FinetuneError for a network without one."""
    try:
        return _replace_head(model, num_classes, seed)
    except TypeError as exc:
        raise FinetuneError(f"the base model cannot replace its head: {exc}") from None


def valence_logits(logits: np.ndarray, classes) -> np.ndarray:
    """Valence scores (N, 3) of a (7-class) model's logits (N, C), so it can be scored on
    a 3-class data set: the log of each group's summed probability, whose argmax is the
    valence `edge_agent.labels.decide` gives. A 3-class model's logits pass through."""
    classes = list(classes)
    if classes == list(VALENCE_CLASSES):
        return logits
    return np.log(np.clip(softmax(logits) @ valence_matrix(classes), 1e-12, 1.0))


# --- scoring --------------------------------------------------------------------------

def score(y_true: np.ndarray, logits: np.ndarray, roc_points: int = 60) -> dict:
    """evaluate_logits plus what the results page draws: ROC curves per class and the
    negative-class recall."""
    from sklearn.metrics import roc_curve

    res = evaluate_logits(y_true, logits, VALENCE_CLASSES)
    res["negative_recall"] = res["per_class"]["negative"]["recall"]
    prob = softmax(np.asarray(logits, dtype=np.float64))
    curves = {}
    for c, name in enumerate(VALENCE_CLASSES):
        pos = y_true == c
        if 0 < pos.sum() < len(pos):
            fpr, tpr, _ = roc_curve(pos, prob[:, c])
            if len(fpr) > roc_points:  # keep the page light; the corners stay
                keep = np.unique(np.linspace(0, len(fpr) - 1, roc_points).round().astype(int))
                fpr, tpr = fpr[keep], tpr[keep]
            curves[name] = {"fpr": [round(float(v), 4) for v in fpr], "tpr": [round(float(v), 4) for v in tpr]}
    res["roc"] = curves
    return res


def _fold_row(fold: int, res: dict, n_train: int, base: dict | None, best_epoch: int | None = None) -> dict:
    return {
        "fold": fold, "n_train": n_train, "n": res["n"], "accuracy": res["accuracy"],
        "balanced_accuracy": res["balanced_accuracy"], "negative_recall": res["negative_recall"],
        "auc": res["auc_ovr_macro"], "macro_f1": res["macro_f1"],
        "pearson_r": res["pearson_r"], "wilcoxon_p": res["wilcoxon_p"], "best_epoch": best_epoch,
        "base_accuracy": base["accuracy"] if base else None,
        "base_negative_recall": base["negative_recall"] if base else None,
        "base_auc": base["auc_ovr_macro"] if base else None,
    }


def _mean(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def _summarise(rows: list[dict], true: list[np.ndarray], logits: list[np.ndarray]) -> dict:
    """Means over folds of the per-fold rows, and the pooled confusion matrix / ROC."""
    pooled = score(np.concatenate(true), np.concatenate(logits))
    return {
        "folds": rows, **{k: _mean(rows, k) for k in
                          ("accuracy", "balanced_accuracy", "negative_recall", "auc", "macro_f1", "pearson_r")},
        "accuracy_std": float(np.std([r["accuracy"] for r in rows], ddof=1)) if len(rows) > 1 else 0.0,
        "confusion_matrix": pooled["confusion_matrix"], "roc": pooled["roc"], "auc_per_class": pooled["auc_ovr"],
        "per_class": pooled["per_class"],
    }


def _base_summary(rows: list[dict]) -> dict:
    return {"accuracy": _mean(rows, "accuracy"), "balanced_accuracy": _mean(rows, "balanced_accuracy"),
            "negative_recall": _mean(rows, "negative_recall"), "auc": _mean(rows, "auc_ovr_macro")}


# --- the quality gate -----------------------------------------------------------------

# Balanced accuracy (mean per-class recall) is 1/3 for any constant or random 3-class
# answer, and a macro one-vs-rest AUC of 0.5 is a ranking no better than chance; a model
# within these margins of either learned nothing the validation subjects can see.
CHANCE_BALANCED_ACCURACY = 1 / 3 + 0.05
CHANCE_AUC = 0.55


def quality_gate(validation: dict, base_validation: dict | None, select: str) -> list[str]:
    """Why a fine-tuned model must not be used, judged on its validation subjects only:
    at chance (balanced accuracy or macro AUC), or below the base model on the metric
    that selected it. [] when it passes. validation / base_validation: `_summarise` /
    `_base_summary` dicts."""
    reasons = []
    bal = validation.get("balanced_accuracy")
    if bal is not None and bal <= CHANCE_BALANCED_ACCURACY:
        reasons.append(f"validation balanced accuracy {bal:.3f} is at chance (1/3 for three classes)")
    auc = validation.get("auc")
    missing = [c for c, v in (validation.get("per_class") or {}).items() if not v.get("support")]
    if missing or auc is None:
        reasons.append(f"the validation subjects hold no {' or '.join(missing) or 'two'} images, so the model "
                       "cannot be judged (add subjects or raise the validation share)")
    elif auc <= CHANCE_AUC:
        reasons.append(f"validation AUC {auc:.3f} is at chance (0.5)")
    key = SELECT_KEYS[select]
    mine, theirs = validation.get(key), (base_validation or {}).get(key)
    if mine is not None and theirs is not None and mine < theirs:
        reasons.append(f"validation {key.replace('_', ' ')} {mine:.3f} is below the base model's {theirs:.3f}")
    return reasons


# --- the job --------------------------------------------------------------------------

@dataclass
class FinetuneResult:
    runs: list[dict]  # one per w, on the validation subjects: means, per-fold rows, pooled scoring
    best_w: float  # chosen on validation
    test: dict  # the chosen w's models scored once on the test subjects
    model: nn.Module  # trained with best_w; on all subjects but validation ones when k-fold
    base: dict  # {"validation": ..., "test": ..., "source": ...}: the base model on the same sides
    splits: list[dict]  # subjects per side, per fold
    rejected: list[str]  # the quality gate's reasons; [] when the model passed
    seconds: float

    def summary(self) -> dict:
        return {"best_w": self.best_w, "runs": self.runs, "test": self.test, "base": self.base,
                "splits": self.splits, "rejected": self.rejected, "seconds": round(self.seconds, 2)}


SELECT_KEYS = {"accuracy": "accuracy", "negative_recall": "negative_recall", "auc": "auc"}


class _Trainer:
    """Trains one fine-tuned model of `base` per call (a w and a split), reporting
    progress as run i of `total_runs`."""

    def __init__(self, images, labels, is_worker, base: BaseModel, params: FinetuneParams, total_runs: int,
                 on_progress, stop, log_fn):
        self.images, self.labels, self.is_worker = images, labels, is_worker
        self.base, self.params, self.cfg = base, params, params.train_config()
        self.total_runs, self.run_no = total_runs, 0
        self.on_progress, self.stop, self.log_fn = on_progress, stop, log_fn

    def __call__(self, split: SubjectSplit, w: float, fold_label) -> tuple[nn.Module, int]:
        """(model in eval mode with its best validation epoch's weights, that epoch).
        Raises Cancelled."""
        self.run_no += 1
        run_no, cfg = self.run_no, self.cfg
        torch.manual_seed(self.params.seed)
        model = replace_head(self.base.build(), len(VALENCE_CLASSES), self.params.seed)

        def on_epoch(m):
            if self.on_progress:
                self.on_progress({
                    "run": run_no, "runs": self.total_runs, "w": w, "fold": fold_label, "epoch": m.epoch,
                    "epochs": cfg.epochs, "loss": m.train_loss, "train_ce": m.train_ce,
                    "train_accuracy": m.train_accuracy, "val_loss": m.val_loss, "val_accuracy": m.val_accuracy,
                    "seconds": m.seconds,
                })

        images, labels = self.images, self.labels
        res = fit(
            model, images[split.train], labels[split.train], images[split.val], labels[split.val],
            spec=self.base.spec, config=cfg, num_classes=len(VALENCE_CLASSES),
            sample_weight=sample_weights(self.is_worker[split.train], w),
            on_epoch=on_epoch, should_stop=self.stop, progress=False, restore_best=True, log=self.log_fn,
        )
        if res.cancelled or self.stop():
            raise Cancelled()
        return model.eval(), res.best_epoch


def _base_scores(base: BaseModel, images, labels, splits) -> tuple[list[dict], list[dict]]:
    """The base model on each validation and on each test side, grouped to valence: the
    bar to clear. (per-fold validation scores, per-fold test scores)"""
    model = base.build().eval()

    def scores(idx):
        logits = predict_logits(model, images[idx], base.spec) / base.temperature
        return score(labels[idx], valence_logits(logits, base.classes))

    return [scores(sp.val) for sp in splits], [scores(sp.test) for sp in splits]


def _scored_folds(fold_models, splits, side: str, images, labels, spec, base_rows, best_epochs=None) -> dict:
    """`_summarise` of each fold's model scored on its `side` ("val" or "test") indices."""
    rows, true, pooled = [], [], []
    for k, sp in enumerate(splits, start=1):
        idx = getattr(sp, side)
        logits = predict_logits(fold_models[k], images[idx], spec)
        epoch = best_epochs[k] if best_epochs else None
        rows.append(_fold_row(k, score(labels[idx], logits), len(sp.train), base_rows[k - 1], epoch))
        true.append(labels[idx])
        pooled.append(logits)
    return _summarise(rows, true, pooled)


def _split_row(fold, sp: SubjectSplit, subjects) -> dict:
    return {"fold": fold, "train_subjects": sorted(set(subjects[sp.train])),
            "val_subjects": sorted(set(subjects[sp.val])), "test_subjects": sorted(set(subjects[sp.test])),
            "n_train": int(len(sp.train)), "n_val": int(len(sp.val)), "n_test": int(len(sp.test))}


def finetune(
    images: np.ndarray,
    labels: np.ndarray,
    is_worker: np.ndarray,
    subjects: np.ndarray,
    base: BaseModel,
    params: FinetuneParams,
    *,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    log_fn=log.info,
) -> FinetuneResult:
    """Fine-tune `base` for every w of `params.worker_weights` and every fold.

    images: uint8 NHWC (`to_model_pixels` output for base.spec); labels: indices into
    VALENCE_CLASSES; is_worker, subjects: per image (N,). Each fold's validation subjects
    pick the epoch (the weights of the best validation epoch are kept) and, averaged over
    folds, the w of a sweep and the quality gate's verdict. The test subjects are scored
    once, for the chosen w only. on_progress gets a dict per epoch (run, w, fold, epoch,
    losses, accuracies, seconds). Raises FinetuneError (too few images or subjects) and
    Cancelled.
    """
    t0 = time.time()
    labels = np.asarray(labels, dtype=np.int64)
    subjects = np.asarray(subjects).astype(str)
    is_worker = np.asarray(is_worker, dtype=bool)
    if len(labels) < 4:
        raise FinetuneError("need at least 4 images")
    splits = subject_splits(subjects, labels, params.split, params.test_fraction, params.folds, params.seed,
                            params.val_fraction)
    spec = base.spec
    weights = [float(w) for w in params.worker_weights]
    final_retrain = params.split == "kfold"
    train = _Trainer(images, labels, is_worker, base, params, len(weights) * len(splits) + (1 if final_retrain else 0),
                     on_progress, should_stop or (lambda: False), log_fn)
    base_val, base_test = _base_scores(base, images, labels, splits)

    runs, models = [], {}
    for w in weights:
        fold_models, best_epochs = {}, {}
        for k, sp in enumerate(splits, start=1):
            fold_models[k], best_epochs[k] = train(sp, w, k)
            models[w, k] = fold_models[k]
        runs.append({"w": w, **_scored_folds(fold_models, splits, "val", images, labels, spec, base_val, best_epochs)})
        log_fn(f"w={w}: validation accuracy {runs[-1]['accuracy']:.4f}, "
               f"negative recall {runs[-1]['negative_recall']:.4f}")

    key = SELECT_KEYS[params.select]
    best = max(runs, key=lambda r: (r[key] if r[key] is not None else -1, -abs(r["w"] - 1)))
    best_w = best["w"]
    # The only time the test subjects are looked at.
    chosen = {k: models[best_w, k] for k in range(1, len(splits) + 1)}
    test = {"w": best_w, **_scored_folds(chosen, splits, "test", images, labels, spec, base_test)}
    base_summary = {"validation": _base_summary(base_val), "test": _base_summary(base_test), "source": base.source}
    rejected = quality_gate(best, base_summary["validation"], params.select)
    split_info = [_split_row(k, sp, subjects) for k, sp in enumerate(splits, start=1)]
    if final_retrain:
        sp = final_split(subjects, labels, params.val_fraction, params.seed)
        model, _ = train(sp, best_w, "all")
        split_info.append(_split_row("all", sp, subjects))
    else:
        model = models[best_w, 1]
    return FinetuneResult(runs, best_w, test, model, base_summary, split_info, rejected, time.time() - t0)


def save_weights(model: nn.Module, path, base: BaseModel, params: FinetuneParams, meta: dict) -> Path:
    """A checkpoint `load_base` (and `workers.models.load_checkpoint`) can read: the
    registry's weights artifact, and the start of the next fine-tune. Returns the path."""
    config = {**base.model_config, "num_classes": len(VALENCE_CLASSES)}
    meta = {"arch": base.arch, "model_config": config, "classes": list(VALENCE_CLASSES),
            "preprocess": base.spec.to_dict(), **meta}
    return save_checkpoint(path, model, meta, epoch=params.epochs, config=asdict(params.train_config()),
                           history=[], best_metric=None, best_epoch=params.epochs)


def export(model: nn.Module, path, base: BaseModel, version: str, dataset: str) -> Path:
    from .export import export_onnx

    return export_onnx(copy.deepcopy(model).cpu(), path, base.spec, VALENCE_CLASSES, base.arch, version, dataset)


def write_card(path, **card) -> Path:
    path = Path(path)
    path.write_text(json.dumps(card, indent=1, default=str))
    return path
