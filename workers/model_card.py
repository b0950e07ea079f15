"""Ship a trained checkpoint: fit the temperature on the validation split, score the
test split once, export ONNX (flip and temperature in the graph) with metadata, check
parity, measure cost, and write the model card — the sidecar JSON DESIGN asks for."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from edge_agent.classifier import softmax
from edge_agent.labels import RULE
from edge_agent.preprocess import PreprocessSpec

from .calibration import fit_temperature, save_reliability_diagram
from .evaluation import evaluate_logits, save_confusion
from .export import export_onnx, parity_check
from .models.checkpoint import load_checkpoint, save_checkpoint
from .predict import predict_logits
from .report import count_flops, machine, onnx_latency, peak_inference_memory

PAPER_ACCURACY = 0.792  # LiExNet paper, FER2013 7-class
GOAL_ACCURACY = 0.68  # the product's goal for the shipped model


def brief(res: dict) -> dict:
    """The card's view of `evaluation.evaluate_logits` output."""
    out = {k: res[k] for k in ("n", "accuracy", "macro_f1", "mcc", "auc_ovr_macro", "pearson_r", "wilcoxon_p",
                               "ece", "nll")}
    out["per_class_recall"] = {c: v["recall"] for c, v in res["per_class"].items()}
    out["per_class_precision"] = {c: v["precision"] for c, v in res["per_class"].items()}
    if "valence" in res:
        out["valence_accuracy"] = res["valence"]["accuracy"]
        out["valence_macro_f1"] = res["valence"]["macro_f1"]
        out["negative_recall"] = res["valence"]["negative_recall"]
        out["rule_label_accuracy"] = res["rule_label_accuracy"]
    return out


def ablation_row(name: str, checkpoint, val, test, tta_flip: bool = False, logit_shift=None) -> dict:
    """One measured row of the card's ablation table: a checkpoint's validation and
    test accuracy, test macro-F1, 3-class accuracy and per-class recall, each row
    calibrated as it would be shipped (a temperature fitted on the validation split: the
    valence rule decides on calibrated probabilities). logit_shift (C,) is added to the
    logits first (class-prior logit adjustment)."""
    model, ck = load_checkpoint(checkpoint)
    spec = PreprocessSpec.from_dict(ck["meta"]["preprocess"])
    classes = ck["meta"]["classes"]
    shift = 0.0 if logit_shift is None else logit_shift
    val_logits, test_logits = (predict_logits(model, d.images, spec, tta_flip=tta_flip) + shift for d in (val, test))
    temperature = fit_temperature(val_logits, val.labels)
    v, t = (evaluate_logits(d.labels, lg / temperature, classes) for d, lg in ((val, val_logits), (test, test_logits)))
    cfg = ck.get("config") or {}
    return {
        "row": name, "checkpoint_epoch": ck["epoch"], "epochs": cfg.get("epochs"), "test_time_flip": tta_flip,
        "parameters": int(sum(p.numel() for p in model.parameters())), "val_accuracy": v["accuracy"],
        "val_macro_f1": v["macro_f1"], "test_accuracy": t["accuracy"], "test_macro_f1": t["macro_f1"],
        "test_accuracy_3class": t["valence"]["accuracy"], "valence_rule": RULE, "temperature": temperature,
        "test_recall": {c: r["recall"] for c, r in t["per_class"].items()},
        "command": ck["meta"].get("command"),
    }


def logit_adjustment(train_labels, num_classes: int, tau: float = 1.0):
    """−τ·log(prior) per class (C,), the post-hoc logit adjustment of Menon et al.,
    "Long-tail learning via logit adjustment", ICLR 2021, eq. 8: it trades a little
    accuracy on frequent classes for recall on rare ones (disgust is 1.5 % of FER2013
    Training)."""
    counts = np.bincount(np.asarray(train_labels), minlength=num_classes).astype(np.float64)
    return (-tau * np.log(np.maximum(counts, 1) / counts.sum())).astype(np.float32)


def _score(model, spec, classes, val, test, val_split, test_split, tta_flip, calibrate, log) -> dict:
    """Logits with and without flip on both splits, the temperature fitted on the
    validation split only, and the evaluations the card reports; the one look at the
    test split."""
    def logits_of(images, flip):
        return predict_logits(model, images, spec, tta_flip=flip)

    val_logits = {f: logits_of(val.images, f) for f in (False, True)}
    temperature = fit_temperature(val_logits[tta_flip], val.labels) if calibrate else 1.0
    log(f"temperature fitted on {val_split}: {temperature:.4f}")
    val_res = evaluate_logits(val.labels, val_logits[tta_flip] / temperature, classes)
    # The one look at the test split.
    test_logits = {f: logits_of(test.images, f) for f in (False, True)}
    test_res = evaluate_logits(test.labels, test_logits[tta_flip] / temperature, classes)
    test_uncal = evaluate_logits(test.labels, test_logits[tta_flip], classes)
    other = evaluate_logits(test.labels, test_logits[not tta_flip] / temperature, classes)
    log(f"{test_split}: accuracy {test_res['accuracy']:.4f} macro-F1 {test_res['macro_f1']:.4f} "
        f"3-class {test_res['valence']['accuracy']:.4f} ECE {test_uncal['ece']:.4f} -> {test_res['ece']:.4f}")
    return {"val_logits": val_logits, "test_logits": test_logits, "temperature": temperature, "val": val_res,
            "test": test_res, "test_uncalibrated": test_uncal, "test_other_flip": other}


def _metrics(s: dict, val, val_split, test_split, tta_flip) -> dict:
    test_res, test_uncal, other = s["test"], s["test_uncalibrated"], s["test_other_flip"]
    flip_key = f"{test_split}_{'without' if tta_flip else 'with'}_flip"
    return {
        test_split: brief(test_res),
        f"{test_split}_uncalibrated": {"ece": test_uncal["ece"], "nll": test_uncal["nll"]},
        flip_key: {"accuracy": other["accuracy"], "macro_f1": other["macro_f1"],
                   "accuracy_3class": other["valence"]["accuracy"]},
        val_split: brief(s["val"]),
        f"{val_split}_accuracy_by_flip": {
            "without": float((s["val_logits"][False].argmax(1) == val.labels).mean()),
            "with": float((s["val_logits"][True].argmax(1) == val.labels).mean())},
    }


def _headline(test_res: dict, test_uncal: dict) -> dict:
    return {
        "privatetest_accuracy_7class": test_res["accuracy"],
        "privatetest_macro_f1": test_res["macro_f1"],
        "privatetest_accuracy_3class": test_res["valence"]["accuracy"],
        "privatetest_macro_f1_3class": test_res["valence"]["macro_f1"],
        "privatetest_negative_recall": test_res["valence"]["negative_recall"],
        "privatetest_ece": test_res["ece"],
        "privatetest_ece_uncalibrated": test_uncal["ece"],
        "paper_accuracy_7class": PAPER_ACCURACY,
        "goal_accuracy_7class": GOAL_ACCURACY,
    }


def _cost(model, spec, onnx_path, tta_flip) -> dict:
    flops = count_flops(model, spec)
    return {
        "measured_on": machine(),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "flops_per_image": flops * (2 if tta_flip else 1),
        "flops_per_image_single_pass": flops,
        "peak_inference_memory": peak_inference_memory(model, spec),
        "onnxruntime_cpu_latency_batch1": onnx_latency(onnx_path, spec, 1, threads=2),
        "onnxruntime_cpu_throughput_batch64": onnx_latency(onnx_path, spec, 64, runs=30, threads=2),
    }


def _ablation_table(checkpoint, meta, data, val, test, classes, ablations, earlier_rows) -> list[dict]:
    rows = list(earlier_rows or [])
    rows += [ablation_row(name, ckpt, val, test) for name, ckpt in (ablations or {}).items()]
    rows.append(ablation_row("shipped checkpoint + test-time flip", checkpoint, val, test, True))
    if meta.get("train_split"):
        shift = logit_adjustment(data.where_split(*meta["train_split"].split(",")).labels, len(classes))
        rows.append(ablation_row("shipped checkpoint + class-prior logit adjustment (τ = 1)",
                                 checkpoint, val, test, logit_shift=shift))
    return rows


def ship(
    checkpoint,
    data,
    onnx_out,
    card_out,
    weights_out=None,
    val_split="PublicTest",
    test_split="PrivateTest",
    tta_flip=False,
    calibrate=True,
    version="liexnet-fer2013@2",
    notes: dict | None = None,
    ship_command: str = "",
    figures_dir=None,
    ablations: dict | None = None,
    earlier_rows: list | None = None,
    log=print,
) -> dict:
    """Export `checkpoint` as the model at `onnx_out` with its card at `card_out`.

    data: an ImageSet with `val_split` and `test_split`. The temperature is fitted on
    the validation split only; the test split is scored once for the card (with and
    without flip, before and after calibration). weights_out: the shipped network as a
    checkpoint (`workers.models.checkpoint`, meta plus `version` and `temperature`), the
    start of fine-tuning. ablations: {row name: checkpoint} evaluated the same way for the
    card's ablation table; earlier_rows: rows an earlier card measured with this protocol
    on the same splits (their checkpoints need not exist any more), listed first.
    figures_dir: confusion matrices and the reliability diagram as PNG. Returns the card
    (dict). Raises CheckpointError for a checkpoint without architecture metadata.
    """
    model, ck = load_checkpoint(checkpoint)
    meta = ck["meta"]
    classes = meta["classes"]
    spec = PreprocessSpec.from_dict(meta["preprocess"])
    val, test = data.where_split(*val_split.split(",")), data.where_split(*test_split.split(","))
    s = _score(model, spec, classes, val, test, val_split, test_split, tta_flip, calibrate, log)
    temperature, test_res, test_logits = s["temperature"], s["test"], s["test_logits"]
    if figures_dir:
        save_confusion(test_res, figures_dir, f"confusion-{test_split.lower()}")
        save_reliability_diagram(softmax(test_logits[tta_flip]), softmax(test_logits[tta_flip] / temperature),
                                 test.labels, Path(figures_dir) / f"reliability-{test_split.lower()}.png",
                                 title=f"{Path(onnx_out).stem}, {test_split}, T = {temperature:.3f}")

    path = export_onnx(model, onnx_out, spec, classes, meta["arch"], version, meta.get("dataset", "fer2013"),
                       tta_flip=tta_flip, temperature=temperature)
    parity = parity_check(model, path, spec, test.images[:256], tta_flip=tta_flip, temperature=temperature)
    if weights_out:
        # So fine-tuning (workers.finetune.load_base) and the benchmarks start from the
        # exact network that was shipped.
        save_checkpoint(weights_out, model, {**meta, "version": version, "temperature": temperature},
                        epoch=ck["epoch"], config=ck.get("config"), history=ck.get("history"),
                        best_metric=ck.get("best_metric"), best_epoch=ck.get("best_epoch"))
    card = {
        "name": Path(onnx_out).stem,
        "version": version,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "arch": meta["arch"] + ("+flip" if tta_flip else ""),
        "model_config": meta["model_config"],
        "dataset": meta.get("dataset", "fer2013"),
        "classes": classes,
        "preprocess": spec.to_dict(),
        "temperature": temperature,
        "valence_rule": RULE,
        "protocol": {"train": meta.get("train_split"), "select": val_split, "test": test_split,
                     "test_time_flip": tta_flip, "checkpoint_epoch": ck["epoch"],
                     "temperature_fitted_on": val_split if calibrate else None},
        "metrics": _metrics(s, val, val_split, test_split, tta_flip),
        "headline": _headline(test_res, s["test_uncalibrated"]),
        "cost": _cost(model, spec, path, tta_flip),
        "parity": parity,
        "weights": Path(weights_out).name if weights_out else None,
        "commands": {"train": meta.get("command"), "ship": ship_command},
        "training_history": ck.get("history"),
        **(notes or {}),
    }
    if ablations or earlier_rows:
        card["ablation"] = _ablation_table(checkpoint, meta, data, val, test, classes, ablations, earlier_rows)
    Path(card_out).parent.mkdir(parents=True, exist_ok=True)
    Path(card_out).write_text(json.dumps(card, indent=2) + "\n")
    return card
