"""Ship a trained checkpoint: tune the inference-time blur on the validation split,
score the test split once, export ONNX with metadata, check parity, measure cost, and
write the model card (the sidecar JSON DESIGN asks for)."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import torch

from edge_agent.preprocess import PreprocessSpec

from .evaluation import evaluate_logits, save_confusion
from .export import export_onnx, parity_check
from .predict import predict_logits
from .report import count_flops, onnx_latency, peak_inference_memory

PAPER_ACCURACY = 0.792  # LiExNet paper, FER2013


def tune_eval_blur(model, images, labels, spec, sigmas, tta_flip) -> tuple[float | None, dict]:
    """The inference blur with the best validation accuracy (None: no front end)."""
    im = getattr(model, "input_match", None)
    if im is None or not hasattr(im, "set_eval_blur"):
        return None, {}
    scores = {}
    for s in sigmas:
        im.set_eval_blur(s)
        scores[float(s)] = float((predict_logits(model, images, spec, tta_flip=tta_flip).argmax(1) == labels).mean())
    best = max(scores, key=lambda s: (scores[s], -abs(s - im.train_blur)))
    im.set_eval_blur(best)
    return best, scores


def _brief(res: dict) -> dict:
    out = {k: res[k] for k in ("n", "accuracy", "macro_f1", "mcc", "auc_ovr_macro", "pearson_r", "wilcoxon_p")}
    out["per_class_recall"] = {c: v["recall"] for c, v in res["per_class"].items()}
    out["per_class_precision"] = {c: v["precision"] for c, v in res["per_class"].items()}
    if "valence" in res:
        out["valence_accuracy"] = res["valence"]["accuracy"]
        out["negative_recall"] = res["valence"]["negative_recall"]
    return out


def ship(
    checkpoint,
    data,
    onnx_out,
    card_out,
    weights_out=None,
    val_split="PublicTest",
    test_split="PrivateTest",
    tta_flip=True,
    blur_grid=(0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0),
    version="liexnet-fer2013@1",
    notes: dict | None = None,
    ship_command: str = "",
    confusion_dir=None,
    log=print,
) -> dict:
    from .training.loop import load_checkpoint

    model, ck = load_checkpoint(checkpoint)
    meta = ck["meta"]
    spec = PreprocessSpec.from_dict(meta["preprocess"])
    val, test = data.where_split(*val_split.split(",")), data.where_split(*test_split.split(","))

    val_plain = evaluate_logits(val.labels, predict_logits(model, val.images, spec, tta_flip=False), meta["classes"])
    blur, blur_scores = tune_eval_blur(model, val.images, val.labels, spec, blur_grid, tta_flip)
    if blur is not None:
        log(f"eval blur σ chosen on {val_split}: {blur} ({blur_scores})")
    val_res = evaluate_logits(val.labels, predict_logits(model, val.images, spec, tta_flip=tta_flip), meta["classes"])
    # The one look at the test split.
    test_res = evaluate_logits(test.labels, predict_logits(model, test.images, spec, tta_flip=tta_flip), meta["classes"])
    test_no_tta = evaluate_logits(test.labels, predict_logits(model, test.images, spec, tta_flip=False), meta["classes"])
    log(f"{test_split}: accuracy {test_res['accuracy']:.4f} macro-F1 {test_res['macro_f1']:.4f} "
        f"valence {test_res['valence']['accuracy']:.4f} negative recall {test_res['valence']['negative_recall']:.4f}")
    if confusion_dir:
        save_confusion(test_res, confusion_dir, f"confusion-{test_split.lower()}")

    model_config = dict(meta["model_config"])
    if blur is not None:
        model_config["input_match"] = {**model_config["input_match"], "eval_blur": blur}
    path = export_onnx(model, onnx_out, spec, meta["classes"], meta["arch"], version, meta.get("dataset", "fer2013"),
                       tta_flip=tta_flip)
    parity = parity_check(model, path, spec, test.images[:256], tta_flip=tta_flip)
    if weights_out:
        # A checkpoint in `fit`'s format, with the tuned front end in its config, so
        # fine-tuning (workers.finetune.load_base) and the benchmark start from the
        # exact network that was shipped.
        # Fine-tuning data (camera crops, EMOTION-ITCH) is sharp like the test splits,
        # so the checkpoint's front end blurs in training exactly as in inference.
        finetune_config = dict(model_config)
        if blur is not None:
            finetune_config["input_match"] = {**model_config["input_match"], "train_blur": blur}
        Path(weights_out).parent.mkdir(parents=True, exist_ok=True)
        torch.save({
            "model": {k: v.contiguous() for k, v in model.state_dict().items()},
            "meta": {**meta, "model_config": finetune_config, "version": version},
            "epoch": ck["epoch"], "config": ck.get("config"),
        }, weights_out)
    flops = count_flops(model, spec)
    card = {
        "name": Path(onnx_out).stem,
        "version": version,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "arch": meta["arch"] + ("+flip" if tta_flip else ""),
        "model_config": model_config,
        "dataset": meta.get("dataset", "fer2013"),
        "classes": meta["classes"],
        "preprocess": spec.to_dict(),
        "protocol": {"train": meta.get("train_split"), "select": val_split, "test": test_split,
                     "test_time_flip": tta_flip, "checkpoint_epoch": ck["epoch"]},
        "metrics": {
            test_split: _brief(test_res),
            f"{test_split}_without_flip": {"accuracy": test_no_tta["accuracy"], "macro_f1": test_no_tta["macro_f1"]},
            val_split: _brief(val_res),
            f"{val_split}_eval_blur_sweep": blur_scores,
            f"{val_split}_without_front_end_tuning": {"accuracy": val_plain["accuracy"]},
        },
        "headline": {
            "privatetest_accuracy_7class": test_res["accuracy"],
            "privatetest_macro_f1": test_res["macro_f1"],
            "privatetest_accuracy_3class": test_res["valence"]["accuracy"],
            "privatetest_negative_recall": test_res["valence"]["negative_recall"],
            "paper_accuracy_7class": PAPER_ACCURACY,
            "goal_accuracy_7class": 0.68,
        },
        "cost": {
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "flops_per_image": flops * (2 if tta_flip else 1),
            "flops_per_image_single_pass": flops,
            "peak_inference_memory": peak_inference_memory(model, spec),
            "onnxruntime_cpu_latency_batch1": onnx_latency(path, spec, 1, threads=2),
            "onnxruntime_cpu_throughput_batch64": onnx_latency(path, spec, 64, runs=30, threads=2),
        },
        "parity": parity,
        "weights": Path(weights_out).name if weights_out else None,
        "commands": {"train": meta.get("command"), "ship": ship_command},
        "training_history": ck.get("history"),
        **(notes or {}),
    }
    Path(card_out).write_text(json.dumps(card, indent=2) + "\n")
    return card
