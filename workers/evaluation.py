"""Metrics for a classifier's logits, as the issue and the LiExNet paper report them.

3-class figures group labels by valence (DESIGN's default map) and predictions by
`edge_agent.labels.decide` — the group with the largest summed probability, the rule
the edge agent streams with. 7-class figures are the model's argmax (the field's
standard, comparable with the paper and the peer); `rule_label_accuracy` is the 7-class
accuracy of the label that rule shows. Calibration figures (ECE, NLL) come from
`workers.calibration`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from edge_agent.classifier import softmax
from edge_agent.labels import VALENCE_CLASSES, decide, valence_matrix

from .calibration import expected_calibration_error, negative_log_likelihood


def _valence_group(classes, mapping) -> np.ndarray | None:
    try:
        return valence_matrix(classes, mapping)
    except ValueError:
        return None  # classes without a valence: no grouped metrics


def label_agreement(y_true, y_pred) -> dict:
    """Pearson r and the Wilcoxon signed-rank test between label and prediction
    indices, as the LiExNet paper reports per fold."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    out = {"pearson_r": None, "pearson_p": None, "wilcoxon_statistic": None, "wilcoxon_p": None}
    if len(y_true) > 1 and y_true.std() > 0 and y_pred.std() > 0:
        r = stats.pearsonr(y_true, y_pred)
        out["pearson_r"], out["pearson_p"] = float(r.statistic), float(r.pvalue)
    if np.any(y_true != y_pred):  # the test is undefined when every difference is zero
        w = stats.wilcoxon(y_true, y_pred, zero_method="wilcox")
        out["wilcoxon_statistic"], out["wilcoxon_p"] = float(w.statistic), float(w.pvalue)
    return out


def macro_f1(y_true, y_pred, num_classes: int) -> float:
    """Mean F1 over the classes present in y_true (a class absent from the split is
    left out, not counted as 0) — the one macro-F1 of training logs and model cards."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    present = np.unique(y_true)
    if len(present) == 0:
        return 0.0
    f1 = skm.f1_score(y_true, y_pred, labels=np.arange(num_classes), average=None, zero_division=0)
    return float(f1[present].mean())


def evaluate_logits(y_true, logits, classes, valence_map=None) -> dict:
    """Metrics of logits (N, C) against integer labels (N,): accuracy, balanced accuracy
    (sklearn's definition: mean recall over the classes present), macro-F1, MCC,
    per-class precision / recall / F1, one-vs-rest AUC, Pearson r and Wilcoxon p,
    ECE (15 bins) and NLL of softmax(logits), and 3-class figures under
    `edge_agent.labels.decide` when every class has a valence."""
    y_true = np.asarray(y_true)
    classes = list(classes)
    k = len(classes)
    prob = softmax(np.asarray(logits, dtype=np.float64))
    y_pred = prob.argmax(1)
    labels = np.arange(k)
    p, r, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
    auc = {}
    for c in range(k):
        pos = y_true == c
        auc[classes[c]] = float(skm.roc_auc_score(pos, prob[:, c])) if 0 < pos.sum() < len(pos) else None
    valid_auc = [v for v in auc.values() if v is not None]
    out = {
        "n": int(len(y_true)),
        "classes": classes,
        "accuracy": float((y_pred == y_true).mean()),
        # mean recall over the classes present: 1/k for any constant or random answer
        "balanced_accuracy": float(r[np.isin(labels, y_true)].mean()) if len(y_true) else 0.0,
        "macro_f1": macro_f1(y_true, y_pred, k),
        "ece": expected_calibration_error(prob, y_true),
        "nll": negative_log_likelihood(prob, y_true),
        "mcc": float(skm.matthews_corrcoef(y_true, y_pred)),
        "per_class": {
            classes[c]: {"precision": float(p[c]), "recall": float(r[c]), "f1": float(f1[c]), "support": int(support[c])}
            for c in range(k)
        },
        "auc_ovr": auc,
        "auc_ovr_macro": float(np.mean(valid_auc)) if valid_auc else None,
        "confusion_matrix": cm.tolist(),
        **label_agreement(y_true, y_pred),
    }
    group = _valence_group(classes, valence_map)
    if group is not None:
        vi = group.argmax(1)
        rule_label, _, vp, _ = decide(prob, group)
        vt = vi[y_true]
        out["rule_label_accuracy"] = float((rule_label == y_true).mean())
        neg = VALENCE_CLASSES.index("negative")
        out["valence"] = {
            "classes": list(VALENCE_CLASSES),
            "accuracy": float((vt == vp).mean()),
            "negative_recall": float(((vp == neg) & (vt == neg)).sum() / max((vt == neg).sum(), 1)),
            "macro_f1": macro_f1(vt, vp, len(VALENCE_CLASSES)),
            "confusion_matrix": skm.confusion_matrix(vt, vp, labels=[0, 1, 2]).tolist(),
        }
    return out


def save_confusion(result: dict, out_dir, stem: str = "confusion") -> list[Path]:
    """confusion.json and confusion.png (and the valence versions when present)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    tables = [(stem, result["classes"], result["confusion_matrix"])]
    if "valence" in result:
        tables.append((f"{stem}-valence", result["valence"]["classes"], result["valence"]["confusion_matrix"]))
    for name, classes, cm in tables:
        cm = np.asarray(cm)
        (out_dir / f"{name}.json").write_text(json.dumps({"classes": classes, "matrix": cm.tolist()}, indent=1))
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(1 + 0.8 * len(classes), 1 + 0.7 * len(classes)))
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.0%}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
        fig.tight_layout()
        fig.savefig(out_dir / f"{name}.png", dpi=120)
        plt.close(fig)
        written += [out_dir / f"{name}.json", out_dir / f"{name}.png"]
    return written


def summarize_folds(fold_results: list[dict]) -> dict:
    """mean ± std over folds of every scalar metric."""
    keys = ["accuracy", "macro_f1", "mcc", "auc_ovr_macro", "pearson_r"]
    summary = {}
    for key in keys:
        vals = [f[key] for f in fold_results if f.get(key) is not None]
        if vals:
            summary[key] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0}
    for key in ("accuracy", "negative_recall"):
        vals = [f["valence"][key] for f in fold_results if "valence" in f]
        if vals:
            summary[f"valence_{key}"] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0}
    return summary
