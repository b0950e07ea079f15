"""`python -m workers.training <command>`: train, evaluate, crossval, export,
build-engine, report. Run a command with --help for its options."""
from __future__ import annotations

import argparse
import json
import shlex
import sys

import numpy as np


def _add_data_args(p, split_defaults=("Training", "PublicTest")):
    p.add_argument("--data", required=True, help="FER2013 zip/folder/csv, a folder-per-class set, or a manifest CSV")
    p.add_argument("--kind", default="auto", help="fer2013-zip | fer2013-folder | fer2013-csv | folders | manifest")
    p.add_argument("--cache-dir", default=None, help="where decoded uint8 arrays are kept (default ~/.cache/affectwatch)")
    p.add_argument("--skip-unknown-labels", action="store_true", help="skip (and count) unknown labels instead of failing")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def _spec_from_args(args):
    from edge_agent.preprocess import PreprocessSpec

    h, w = args.size
    if args.color == "gray":
        return PreprocessSpec(size=(h, w), color="gray", mean=(0.5,), std=(0.5,))
    return PreprocessSpec(size=(h, w), color="rgb", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _load(args, spec):
    from workers.data import load_dataset

    data = load_dataset(args.data, args.kind, spec, cache_dir=args.cache_dir, strict_labels=not args.skip_unknown_labels)
    if data.report is not None:
        print(f"{args.data}: {data.report.summary()}", file=sys.stderr)
    return data


def _split(data, names: str | None):
    if not names:
        return None
    return data.where_split(*names.split(","))


def _threads(args):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def cmd_train(args):
    import torch

    from workers.models import count_parameters, create_model
    from workers.models.checkpoint import load_checkpoint, read_checkpoint
    from workers.training.augment import AugmentConfig
    from workers.training.loop import TrainConfig, TrainingError, fit
    from edge_agent.labels import valence_matrix

    _threads(args)
    spec = _spec_from_args(args)
    data = _load(args, spec)
    if data.split is not None and args.train_split:
        train = data.where_split(*args.train_split.split(","))
        val = _split(data, args.val_split)
    else:
        # No split column: hold out a stratified fraction for validation.
        from sklearn.model_selection import train_test_split

        tr, va = train_test_split(np.arange(len(data)), test_size=args.val_fraction, stratify=data.labels, random_state=args.seed)
        train, val = data.subset(tr), data.subset(va)
    model_config = dict(num_classes=len(data.classes), in_channels=spec.channels, input_size=list(spec.size))
    model_config.update(json.loads(args.model_config))
    model = create_model(args.model, **model_config)
    print(f"{args.model}: {count_parameters(model):,} parameters; {len(train)} training / {len(val) if val else 0} validation images", file=sys.stderr)
    aug = AugmentConfig() if args.augment else AugmentConfig.off()
    aug.erase = args.erase if args.augment else 0.0
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        weight_decay=args.weight_decay, schedule=args.schedule, warmup_pct=args.warmup_pct,
        label_smoothing=args.label_smoothing, mixup_alpha=args.mixup, class_balanced=args.class_balanced,
        augment=aug, distill_alpha=args.distill_alpha, distill_temperature=args.distill_temperature,
        distill_cached=args.distill_cached,
        seed=args.seed, tta_flip=args.tta_flip, select_metric=args.select, ema_decay=args.ema,
        valence_weight=args.valence_weight,
    )
    valence_group = None
    if args.valence_weight > 0:
        try:
            valence_group = valence_matrix(data.classes)
        except ValueError as exc:
            raise TrainingError(f"--valence-weight: {exc}") from None
    teacher = None
    if args.teacher:
        teacher, _ = load_checkpoint(args.teacher)
    torch.manual_seed(args.seed)
    model = create_model(args.model, **model_config)  # re-create after seeding: same init every run
    if args.init:
        # Start from another run's weights with a fresh optimiser and schedule
        # (a warm restart, or fine-tuning); the architecture must match.
        init = read_checkpoint(args.init)
        model.load_state_dict(init["model"])
        print(f"initialised from {args.init} (epoch {init.get('epoch')})", file=sys.stderr)
    meta = {
        "arch": args.model, "model_config": model_config, "classes": list(data.classes),
        "preprocess": spec.to_dict(), "dataset": args.dataset_name or data.name,
        "train_split": args.train_split, "val_split": args.val_split,
        "command": "python -m workers.training " + " ".join(shlex.quote(a) for a in args.argv),
    }
    res = fit(
        model, train.images, train.labels, val.images if val else None, val.labels if val else None,
        spec=spec, config=cfg, num_classes=len(data.classes), teacher=teacher, out_dir=args.out,
        valence_group=valence_group,
        resume=args.resume, meta=meta, progress=not args.no_progress,
    )
    print(json.dumps({"best_epoch": res.best_epoch, "best_metric": res.best_metric, "checkpoint": str(res.checkpoint)}))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m workers.training", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model; checkpoints every epoch into --out")
    _add_data_args(p)
    p.add_argument("--out", required=True, help="run folder: last.pt (every epoch), best.pt (best on validation)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--model", default="liexnet")
    p.add_argument("--model-config", default="{}", help='JSON of architecture options, e.g. \'{"hidden": 20}\'')
    p.add_argument("--size", type=int, nargs=2, default=(48, 48), metavar=("H", "W"))
    p.add_argument("--color", choices=("gray", "rgb"), default="gray")
    p.add_argument("--train-split", default="Training")
    p.add_argument("--val-split", default="PublicTest")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held out when the data has no splits")
    p.add_argument("--dataset-name", default=None)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--schedule", choices=("onecycle", "cosine", "constant"), default="onecycle")
    p.add_argument("--warmup-pct", type=float, default=0.15)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--mixup", type=float, default=0.0, help="mixup Beta(α, α); 0 disables")
    p.add_argument("--class-balanced", action="store_true", help="class-balanced loss weights (Cui et al.)")
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--erase", type=float, default=0.5, help="random erasing probability")
    p.add_argument("--init", default=None, help="start from this checkpoint's weights (fresh optimiser and schedule)")
    p.add_argument("--teacher", default=None, help="teacher checkpoint for knowledge distillation")
    p.add_argument("--distill-alpha", type=float, default=0.5)
    p.add_argument("--distill-temperature", type=float, default=4.0)
    p.add_argument("--distill-cached", action="store_true",
                   help="teacher logits once per image and mirror before training (cheaper; ignores other augmentation)")
    p.add_argument("--tta-flip", action="store_true", help="validate with test-time horizontal flip")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="validate and keep an exponential moving average of the weights (e.g. 0.999); 0 disables")
    p.add_argument("--valence-weight", type=float, default=0.0, metavar="λ",
                   help="add λ × the cross-entropy of the negative / neutral / positive decision; 0 disables")
    p.add_argument("--select", choices=("accuracy", "macro_f1"), default="accuracy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    from . import commands

    commands.add_subcommands(sub, _add_data_args, _spec_from_args, _load, _threads)
    return ap


def main(argv=None):
    """Run a command. A user's mistake (a data set that cannot be imported, a missing
    file, bad JSON in --model-config, a checkpoint of another schedule) ends with one
    line on stderr and exit status 2, not a traceback; bugs still raise."""
    from workers.data import ImportError_
    from workers.training.loop import TrainingError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in checkpoints: the exact command that made them
    try:
        args.func(args)
    except (ImportError_, TrainingError, FileNotFoundError, IsADirectoryError, PermissionError,
            json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
