"""The training loop as a function: arrays in, checkpoints and per-epoch metrics out.

`fit` knows nothing about files on disk other than its own checkpoints, nothing about
the CLI and nothing about Celery; a caller passes `on_epoch` to hear progress and
`should_stop` to cancel. Every epoch draws its shuffling, augmentation and dropout from
a generator seeded by (seed, epoch), so a resumed run repeats exactly what the
uninterrupted run would have done.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from edge_agent.preprocess import PreprocessSpec, normalize

from ..evaluation import macro_f1
from ..predict import predict_logits
from .augment import AugmentConfig, augment_batch, mixup
from .losses import class_balanced_weights, distillation_loss, soft_targets, weighted_cross_entropy


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 3e-3  # peak learning rate
    weight_decay: float = 1e-2
    momentum: float = 0.9
    schedule: str = "onecycle"  # onecycle | cosine | constant
    warmup_pct: float = 0.15
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0  # 0 disables mixup
    class_balanced: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    distill_alpha: float = 0.5
    distill_temperature: float = 4.0
    # Teacher logits computed once per image and its mirror before training, instead of
    # a teacher forward pass per augmented batch (measured on the 2-core dev machine, one
    # thread, batch 64: resnet_face_small forward 148 ms against LiExNet's whole training
    # step 161 ms, so online distillation costs ~1.9x per epoch), at the price of soft
    # targets that ignore the small affine / colour / erasing changes.
    distill_cached: bool = False
    seed: int = 0
    tta_flip: bool = False  # validate on the mean of image and mirror logits
    select_metric: str = "accuracy"  # accuracy | macro_f1
    eval_batch_size: int = 512

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        if isinstance(d.get("augment"), dict):
            aug = d["augment"]
            d["augment"] = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()})
        return cls(**d)


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float  # the optimised loss: weighted, smoothed, distilled as configured
    train_accuracy: float
    lr: float
    seconds: float
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_macro_f1: float | None = None
    # Plain cross-entropy of the training batches against their labels, without sample
    # weights, smoothing or distillation: comparable across runs with different w.
    train_ce: float | None = None


@dataclass
class FitResult:
    history: list[EpochMetrics]
    best_epoch: int
    best_metric: float | None
    cancelled: bool = False
    checkpoint: Path | None = None  # best.pt (or last.pt with no validation set)


class TrainingError(RuntimeError):
    pass


def _optimizer(model, cfg: TrainConfig):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no decay on BN and biases
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def _scheduler(opt, cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total, pct_start=cfg.warmup_pct, div_factor=25, final_div_factor=1e3
        )
    if cfg.schedule == "cosine":
        warm = max(1, int(cfg.warmup_pct * total))

        def f(step):
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

        return torch.optim.lr_scheduler.LambdaLR(opt, f)
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def _save(obj, path: Path):
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a kill mid-write never corrupts the previous checkpoint


def fit(
    model: nn.Module,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    *,
    spec: PreprocessSpec = PreprocessSpec(),
    config: TrainConfig = TrainConfig(),
    num_classes: int | None = None,
    sample_weight: np.ndarray | None = None,
    teacher: nn.Module | None = None,
    out_dir=None,
    resume: bool = False,
    meta: dict | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = True,
    restore_best: bool = False,
    log=print,
) -> FitResult:
    """Train `model` in place.

    train_images: uint8 NHWC, `to_model_pixels` output. sample_weight: per-image weights
    multiplied into the loss (e.g. worker-weighted fine-tuning). meta: stored in every
    checkpoint (architecture name and config, classes, preprocessing, data set name) so
    a checkpoint can be rebuilt and exported on its own. restore_best: end with the
    weights of the epoch that scored best on the validation images (kept in memory, so it
    works without out_dir); otherwise the model holds the last epoch's weights.
    """
    cfg = config
    n = len(train_labels)
    if n < 2:
        raise TrainingError("need at least two training images")
    if train_images.dtype != np.uint8:
        raise TrainingError("train_images must be uint8 (the decoded cache)")
    if num_classes is None:  # ask the network, not the labels: a subset may lack classes
        model.eval()
        with torch.no_grad():
            num_classes = int(model(torch.from_numpy(normalize(train_images[:2], spec))).shape[1])
    if int(train_labels.max()) >= num_classes or int(train_labels.min()) < 0:
        raise TrainingError(f"labels must lie in 0..{num_classes - 1}")
    # channels_last runs LiExNet's small convolutions ~20% faster on CPU. Opt-in per
    # network: torch 2.13's CPU backward segfaults on some channels_last ResNets
    # (e.g. resnet_face_small with widths 8-16).
    memory_format = torch.channels_last if getattr(model, "channels_last_ok", False) else torch.contiguous_format
    model.to(memory_format=memory_format)
    bs = min(cfg.batch_size, n)
    steps = n // bs  # drop the ragged last batch: BatchNorm needs more than one image
    opt = _optimizer(model, cfg)
    sched = _scheduler(opt, cfg, steps)
    labels_t = torch.from_numpy(train_labels.astype(np.int64))
    weights = torch.ones(n) if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float32)
    if cfg.class_balanced:
        cw = torch.from_numpy(class_balanced_weights(np.bincount(train_labels, minlength=num_classes)))
        weights = weights * cw[labels_t]
    if teacher is not None:
        teacher.eval()
    cached_teacher = None
    if teacher is not None and cfg.distill_cached:
        # (N, 2, C): the teacher's logits for each training image and for its mirror.
        cached_teacher = torch.from_numpy(np.stack([
            predict_logits(teacher, train_images, spec, cfg.eval_batch_size),
            predict_logits(teacher, train_images[:, :, ::-1], spec, cfg.eval_batch_size)], axis=1))
    has_val = val_images is not None and len(val_images) > 0

    out = Path(out_dir) if out_dir else None
    history: list[EpochMetrics] = []
    start_epoch, best_metric, best_epoch = 1, None, 0
    if out:
        out.mkdir(parents=True, exist_ok=True)
        last = out / "last.pt"
        if resume and last.exists():
            ck = torch.load(last, map_location="cpu", weights_only=False)
            if ck["config"]["epochs"] != cfg.epochs:
                raise TrainingError(f"{last} was made for {ck['config']['epochs']} epochs, not {cfg.epochs}")
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            history = [EpochMetrics(**h) for h in ck["history"]]
            start_epoch = ck["epoch"] + 1
            best_metric, best_epoch = ck["best_metric"], ck["best_epoch"]
            log(f"resumed from {last} after epoch {ck['epoch']}")
        elif resume:
            log(f"nothing to resume in {out}; starting fresh")

    def checkpoint(epoch, state_dict):
        return {
            "model": state_dict, "epoch": epoch, "config": asdict(cfg), "meta": meta or {},
            "history": [asdict(h) for h in history], "best_metric": best_metric, "best_epoch": best_epoch,
        }

    cancelled = False
    best_state = None
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.time()
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout
        order = torch.randperm(n, generator=g)
        model.train()
        total_loss, total_ce, correct, seen = 0.0, 0.0, 0, 0
        bar = tqdm(
            range(steps), desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False,
            mininterval=0.5 if sys.stderr.isatty() else 30, file=sys.stderr,
        )
        for b in bar:
            if should_stop is not None and should_stop():
                cancelled = True
                break
            idx = order[b * bs : (b + 1) * bs]
            x = torch.from_numpy(normalize(train_images[idx.numpy()], spec))
            y = labels_t[idx]
            w = weights[idx]
            x, flipped = augment_batch(x, cfg.augment, g, return_flip=True)
            x = x.contiguous(memory_format=memory_format)
            q = soft_targets(y, num_classes, cfg.label_smoothing)
            if cfg.mixup_alpha > 0:
                x, q, perm, lam = mixup(x, q, cfg.mixup_alpha, g)
                w = lam * w + (1 - lam) * w[perm]
            logits = model(x)
            if teacher is not None:
                if cached_teacher is not None:
                    t_logits = cached_teacher[idx, flipped.long()]
                    if cfg.mixup_alpha > 0:
                        t_logits = lam * t_logits + (1 - lam) * t_logits[perm]
                else:
                    with torch.no_grad():
                        t_logits = teacher(x)
                loss = distillation_loss(logits, t_logits, q, cfg.distill_alpha, cfg.distill_temperature, w)
            else:
                loss = weighted_cross_entropy(logits, q, w)
            if not torch.isfinite(loss):
                raise TrainingError(f"loss became {loss.item()} in epoch {epoch}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(y)
            total_ce += float(nn.functional.cross_entropy(logits.detach(), y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            if progress and b % 20 == 0:
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
        bar.close()
        if cancelled:
            log(f"cancelled during epoch {epoch}; the last complete epoch's checkpoint stays")
            break
        m = EpochMetrics(
            epoch=epoch, train_loss=total_loss / max(seen, 1), train_accuracy=correct / max(seen, 1),
            lr=opt.param_groups[0]["lr"], seconds=0.0, train_ce=total_ce / max(seen, 1),
        )
        if has_val:
            logits = predict_logits(model, val_images, spec, cfg.eval_batch_size, cfg.tta_flip)
            lt = torch.from_numpy(logits)
            m.val_loss = float(nn.functional.cross_entropy(lt, torch.from_numpy(val_labels.astype(np.int64))))
            pred = logits.argmax(1)
            m.val_accuracy = float((pred == val_labels).mean())
            m.val_macro_f1 = macro_f1(val_labels, pred, num_classes)
        m.seconds = time.time() - t0
        history.append(m)
        score = (m.val_macro_f1 if cfg.select_metric == "macro_f1" else m.val_accuracy) if has_val else -m.train_loss
        improved = best_metric is None or score > best_metric
        if improved:
            best_metric, best_epoch = score, epoch
            if restore_best and has_val:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if out:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if improved:
                _save(checkpoint(epoch, state), out / "best.pt")
            ck = checkpoint(epoch, state)
            ck["optimizer"], ck["scheduler"] = opt.state_dict(), sched.state_dict()
            _save(ck, out / "last.pt")
        val = (
            f" | val loss {m.val_loss:.4f} acc {m.val_accuracy:.4f} macro-F1 {m.val_macro_f1:.4f}" if has_val else ""
        )
        log(
            f"epoch {epoch}/{cfg.epochs} | train loss {m.train_loss:.4f} acc {m.train_accuracy:.4f}{val}"
            f" | lr {m.lr:.2e} | {m.seconds:.1f}s{' | best' if improved else ''}",
        )
        if on_epoch is not None:
            on_epoch(m)
    if best_state is not None:
        model.load_state_dict(best_state)
    ckpt = None
    if out:
        ckpt = out / ("best.pt" if (out / "best.pt").exists() else "last.pt")
    return FitResult(history, best_epoch, best_metric, cancelled, ckpt)


def load_checkpoint(path, strict_meta: bool = True):
    """(model, checkpoint dict) from a best.pt / last.pt written by `fit` through the CLI."""
    from ..models import create_model

    ck = torch.load(path, map_location="cpu", weights_only=False)
    meta = ck.get("meta") or {}
    if strict_meta and "arch" not in meta:
        raise TrainingError(f"{path} has no architecture metadata; it was not written by the trainer")
    model = create_model(meta["arch"], **meta.get("model_config", {}))
    model.load_state_dict(ck["model"])
    model.eval()
    return model, ck

