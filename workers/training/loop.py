"""The training loop as a function: arrays in, checkpoints and per-epoch metrics out.

`fit` knows nothing about files on disk other than its own checkpoints, nothing about
the CLI and nothing about Celery; a caller passes `on_epoch` to hear progress and
`should_stop` to cancel. Every epoch draws its shuffling, augmentation and dropout from
a generator seeded by (seed, epoch), so a resumed run repeats exactly what the
uninterrupted run would have done.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from edge_agent.preprocess import PreprocessSpec, normalize

from ..evaluation import macro_f1
from ..models.checkpoint import load_checkpoint as _load_checkpoint
from ..models.checkpoint import read_checkpoint, save_checkpoint, state_of
from ..predict import predict_logits
from .augment import AugmentConfig, augment_batch, mixup
from .losses import (class_balanced_weights, distillation_loss, soft_targets, valence_cross_entropy,
                     weighted_cross_entropy)


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
    # Exponential moving average of the weights (Polyak & Juditsky 1992; as timm's
    # ModelEmaV2), updated after every step with this decay; 0 disables. With it, the
    # averaged weights (batch-norm statistics included) are the ones validated, saved as
    # best.pt and left in the model at the end.
    ema_decay: float = 0.0
    # Weight λ of an added valence term, λ·valence_cross_entropy: the loss of the
    # negative / neutral / positive decision the product streams (needs fit's
    # valence_group); 0 disables.
    valence_weight: float = 0.0
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


def _check_inputs(model, train_images, train_labels, spec, num_classes) -> int:
    """The number of classes (asked of the network when not given); raises TrainingError
    for too few images, non-uint8 pixels or labels outside 0..C-1."""
    if len(train_labels) < 2:
        raise TrainingError("need at least two training images")
    if train_images.dtype != np.uint8:
        raise TrainingError("train_images must be uint8 (the decoded cache)")
    if num_classes is None:  # ask the network, not the labels: a subset may lack classes
        model.eval()
        with torch.no_grad():
            num_classes = int(model(torch.from_numpy(normalize(train_images[:2], spec))).shape[1])
    if int(train_labels.max()) >= num_classes or int(train_labels.min()) < 0:
        raise TrainingError(f"labels must lie in 0..{num_classes - 1}")
    return num_classes


def _loss_weights(labels_t, sample_weight, cfg: TrainConfig, train_labels, num_classes) -> torch.Tensor:
    """Per-image loss weights (N,): sample weights times class-balanced weights if asked."""
    n = len(labels_t)
    weights = torch.ones(n) if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float32)
    if cfg.class_balanced:
        cw = torch.from_numpy(class_balanced_weights(np.bincount(train_labels, minlength=num_classes)))
        weights = weights * cw[labels_t]
    return weights


def _teacher_cache(teacher, train_images, spec, cfg: TrainConfig):
    """(N, 2, C): the teacher's logits for each training image and for its mirror, when
    distillation is cached; else None."""
    if teacher is None or not cfg.distill_cached:
        return None
    return torch.from_numpy(np.stack([
        predict_logits(teacher, train_images, spec, cfg.eval_batch_size),
        predict_logits(teacher, train_images[:, :, ::-1], spec, cfg.eval_batch_size)], axis=1))


@dataclass
class _Progress:
    """What a resumed run takes over from `last.pt`."""
    history: list[EpochMetrics] = field(default_factory=list)
    start_epoch: int = 1
    best_metric: float | None = None
    best_epoch: int = 0


def _resume(out: Path, model, opt, sched, ema, cfg: TrainConfig, log) -> _Progress:
    last = out / "last.pt"
    if not last.exists():
        log(f"nothing to resume in {out}; starting fresh")
        return _Progress()
    ck = read_checkpoint(last)
    if ck["config"]["epochs"] != cfg.epochs:
        raise TrainingError(f"{last} was made for {ck['config']['epochs']} epochs, not {cfg.epochs}")
    if ck["config"].get("ema_decay", 0.0) != cfg.ema_decay:
        raise TrainingError(f"{last} was made with --ema {ck['config'].get('ema_decay', 0.0)}, not {cfg.ema_decay}: "
                            "its best score and best.pt would mix averaged and raw weights")
    if ck["config"].get("valence_weight", 0.0) != cfg.valence_weight:
        raise TrainingError(f"{last} was made with --valence-weight {ck['config'].get('valence_weight', 0.0)}, "
                            f"not {cfg.valence_weight}")
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    if ema is not None:
        ema.load_state_dict(ck["ema"])
    log(f"resumed from {last} after epoch {ck['epoch']}")
    return _Progress([EpochMetrics(**h) for h in ck["history"]], ck["epoch"] + 1, ck["best_metric"], ck["best_epoch"])


def _train_epoch(model, opt, sched, epoch, g, cfg: TrainConfig, train_images, labels_t, weights, order, bs, steps,
                 spec, num_classes, memory_format, teacher, cached_teacher, ema, should_stop, progress,
                 valence_of_label=None, group=None):
    """One pass over the shuffled training images. Returns (summed loss, summed plain
    cross-entropy, correct, seen, cancelled)."""
    total_loss, total_ce, correct, seen = 0.0, 0.0, 0, 0
    bar = tqdm(
        range(steps), desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False,
        mininterval=0.5 if sys.stderr.isatty() else 30, file=sys.stderr,
    )
    cancelled = False
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
        if cfg.valence_weight > 0:
            if cfg.mixup_alpha > 0:  # mixup's targets are pairs: the mixed loss of both valences
                loss = loss + cfg.valence_weight * (
                    lam * valence_cross_entropy(logits, valence_of_label[y], group, w)
                    + (1 - lam) * valence_cross_entropy(logits, valence_of_label[y[perm]], group, w))
            else:
                loss = loss + cfg.valence_weight * valence_cross_entropy(logits, valence_of_label[y], group, w)
        if not torch.isfinite(loss):
            raise TrainingError(f"loss became {loss.item()} in epoch {epoch}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if ema is not None:
            ema.update_parameters(model)
        total_loss += loss.item() * len(y)
        total_ce += float(nn.functional.cross_entropy(logits.detach(), y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        if progress and b % 20 == 0:
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
    bar.close()
    return total_loss, total_ce, correct, seen, cancelled


def _validate(m: EpochMetrics, model, val_images, val_labels, spec, cfg: TrainConfig, num_classes) -> None:
    """Fills m's validation loss, accuracy and macro-F1."""
    logits = predict_logits(model, val_images, spec, cfg.eval_batch_size, cfg.tta_flip)
    lt = torch.from_numpy(logits)
    m.val_loss = float(nn.functional.cross_entropy(lt, torch.from_numpy(val_labels.astype(np.int64))))
    pred = logits.argmax(1)
    m.val_accuracy = float((pred == val_labels).mean())
    m.val_macro_f1 = macro_f1(val_labels, pred, num_classes)


def _epoch_line(m: EpochMetrics, cfg: TrainConfig, has_val: bool, improved: bool) -> str:
    val = (
        f" | val loss {m.val_loss:.4f} acc {m.val_accuracy:.4f} macro-F1 {m.val_macro_f1:.4f}" if has_val else ""
    )
    return (f"epoch {m.epoch}/{cfg.epochs} | train loss {m.train_loss:.4f} acc {m.train_accuracy:.4f}{val}"
            f" | lr {m.lr:.2e} | {m.seconds:.1f}s{' | best' if improved else ''}")


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
    valence_group: np.ndarray | None = None,
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

    train_images: uint8 NHWC (N, H, W, C), `to_model_pixels` output; labels: class
    indices (N,). sample_weight: per-image weights (N,) multiplied into the loss (e.g.
    worker-weighted fine-tuning). valence_group: the (C, 3) matrix of
    `edge_agent.labels.valence_matrix`, needed when config.valence_weight > 0. meta:
    stored in every checkpoint (architecture name and config, classes, preprocessing,
    data set name) so a checkpoint can be rebuilt and exported on its own
    (`workers.models.checkpoint`). out_dir: where `best.pt` and
    `last.pt` (resumable) are written after every epoch. restore_best: end with the
    weights of the epoch that scored best on the validation images (kept in memory, so it
    works without out_dir); otherwise the model holds the last epoch's weights.
    Raises TrainingError (bad inputs, a non-finite loss, a resume for another number of
    epochs, EMA decay or valence weight, a valence weight without valence_group) and
    ValueError (unknown optimizer or schedule).
    """
    cfg = config
    n = len(train_labels)
    num_classes = _check_inputs(model, train_images, train_labels, spec, num_classes)
    # channels_last runs LiExNet's small convolutions ~20% faster on CPU. Opt-in per
    # network: torch 2.13's CPU backward segfaults on some channels_last ResNets
    # (e.g. resnet_face_small with widths 8-16).
    memory_format = torch.channels_last if getattr(model, "channels_last_ok", False) else torch.contiguous_format
    model.to(memory_format=memory_format)
    bs = min(cfg.batch_size, n)
    steps = n // bs  # drop the ragged last batch: BatchNorm needs more than one image
    opt = _optimizer(model, cfg)
    sched = _scheduler(opt, cfg, steps)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
           if cfg.ema_decay > 0 else None)
    evaluated = ema.module if ema is not None else model
    labels_t = torch.from_numpy(train_labels.astype(np.int64))
    weights = _loss_weights(labels_t, sample_weight, cfg, train_labels, num_classes)
    group = valence_of_label = None
    if cfg.valence_weight < 0:
        raise TrainingError(f"the valence weight must be ≥ 0, not {cfg.valence_weight}")
    if cfg.valence_weight > 0:
        if valence_group is None:
            raise TrainingError("a valence weight needs the valence grouping of the classes (valence_group)")
        group = torch.as_tensor(valence_group, dtype=torch.float32)
        valence_of_label = group.argmax(1)
    if teacher is not None:
        teacher.eval()
    cached_teacher = _teacher_cache(teacher, train_images, spec, cfg)
    has_val = val_images is not None and len(val_images) > 0

    out = Path(out_dir) if out_dir else None
    state = _Progress()
    if out:
        out.mkdir(parents=True, exist_ok=True)
        if resume:
            state = _resume(out, model, opt, sched, ema, cfg, log)
    history = state.history

    def save(name, epoch, weights_now, **extra):
        save_checkpoint(out / name, weights_now, meta or {}, epoch=epoch, config=asdict(cfg),
                        history=[asdict(h) for h in history], best_metric=state.best_metric,
                        best_epoch=state.best_epoch, **extra)

    cancelled = False
    best_state = None
    for epoch in range(state.start_epoch, cfg.epochs + 1):
        t0 = time.time()
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout
        order = torch.randperm(n, generator=g)
        model.train()
        total_loss, total_ce, correct, seen, cancelled = _train_epoch(
            model, opt, sched, epoch, g, cfg, train_images, labels_t, weights, order, bs, steps, spec, num_classes,
            memory_format, teacher, cached_teacher, ema, should_stop, progress, valence_of_label, group)
        if cancelled:
            log(f"cancelled during epoch {epoch}; the last complete epoch's checkpoint stays")
            break
        m = EpochMetrics(
            epoch=epoch, train_loss=total_loss / max(seen, 1), train_accuracy=correct / max(seen, 1),
            lr=opt.param_groups[0]["lr"], seconds=0.0, train_ce=total_ce / max(seen, 1),
        )
        if has_val:
            _validate(m, evaluated, val_images, val_labels, spec, cfg, num_classes)
        m.seconds = time.time() - t0
        history.append(m)
        score = (m.val_macro_f1 if cfg.select_metric == "macro_f1" else m.val_accuracy) if has_val else -m.train_loss
        improved = state.best_metric is None or score > state.best_metric
        if improved:
            state.best_metric, state.best_epoch = score, epoch
            if restore_best and has_val:
                best_state = state_of(evaluated)
        if out:
            if improved:
                save("best.pt", epoch, state_of(evaluated))
            save("last.pt", epoch, state_of(model), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                 **({"ema": ema.state_dict()} if ema is not None else {}))
        log(_epoch_line(m, cfg, has_val, improved))
        if on_epoch is not None:
            on_epoch(m)
    if best_state is not None:
        model.load_state_dict(best_state)
    elif ema is not None:
        model.load_state_dict(state_of(ema.module))
    ckpt = None
    if out:
        ckpt = out / ("best.pt" if (out / "best.pt").exists() else "last.pt")
    return FitResult(history, state.best_epoch, state.best_metric, cancelled, ckpt)


def load_checkpoint(path, strict_meta: bool = True):
    """(model in eval mode, checkpoint dict) from a best.pt / last.pt written by `fit`:
    `workers.models.checkpoint.load_checkpoint`, kept here for its callers. Raises
    CheckpointError (a ValueError) when the file names no architecture."""
    return _load_checkpoint(path, strict_meta)
