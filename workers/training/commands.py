"""The CLI subcommands after `train`: evaluate, crossval, export, build-engine, report."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _dump(obj, path=None):
    text = json.dumps(obj, indent=2)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    print(text)


def _checkpoint_spec(ck):
    from edge_agent.preprocess import PreprocessSpec

    return PreprocessSpec.from_dict(ck["meta"]["preprocess"])


def cmd_evaluate(args, _load, _threads):
    from workers.evaluation import evaluate_logits, save_confusion
    from workers.predict import predict_logits
    from workers.models.checkpoint import load_checkpoint

    _threads(args)
    model, ck = load_checkpoint(args.checkpoint)
    spec = _checkpoint_spec(ck)
    data = _load(args, spec)
    if args.split:
        data = data.where_split(*args.split.split(","))
    classes = ck["meta"]["classes"]
    if list(data.classes) != list(classes):
        raise SystemExit(f"the data's classes {list(data.classes)} differ from the model's {classes}")
    logits = predict_logits(model, data.images, spec, tta_flip=args.tta_flip)
    res = evaluate_logits(data.labels, logits, classes)
    res.update(checkpoint=str(args.checkpoint), epoch=ck["epoch"], split=args.split, tta_flip=args.tta_flip)
    if args.out:
        save_confusion(res, Path(args.out).parent, Path(args.out).stem + "-confusion")
    _dump(res, args.out)


def cmd_crossval(args, _load, _threads, _spec_from_args):
    import torch

    from workers.crossval import cross_validate
    from workers.training.augment import AugmentConfig
    from workers.training.loop import TrainConfig

    _threads(args)
    spec = _spec_from_args(args)
    data = _load(args, spec)
    if args.split:
        data = data.where_split(*args.split.split(","))
    model_config = dict(num_classes=len(data.classes), in_channels=spec.channels, input_size=list(spec.size))
    model_config.update(json.loads(args.model_config))
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, label_smoothing=args.label_smoothing,
        augment=AugmentConfig() if args.augment else AugmentConfig.off(), seed=args.seed,
    )
    torch.manual_seed(args.seed)
    res = cross_validate(data, args.model, model_config, cfg, spec, folds=args.folds, out_dir=args.run_dir,
                         tta_flip=args.tta_flip, log=lambda s: print(s, file=sys.stderr))
    for k, v in res["summary"].items():
        print(f"{k}: {v['mean']:.4f} ± {v['std']:.4f}", file=sys.stderr)
    _dump(res, args.out)


def cmd_export(args, _load, _threads):
    from workers.export import check_metadata, export_onnx, parity_check
    from workers.models.checkpoint import load_checkpoint

    model, ck = load_checkpoint(args.checkpoint)
    meta = ck["meta"]
    spec = _checkpoint_spec(ck)
    version = args.version or f"{meta['arch']}-{meta.get('dataset', 'data')}-e{ck['epoch']}"
    path = export_onnx(model, args.out, spec, meta["classes"], meta["arch"], version,
                       args.dataset_name or meta.get("dataset", "unknown"), tta_flip=args.tta_flip)
    images = None
    if args.data:
        data = _load(args, spec)
        images = data.images[: args.parity_images]
    parity = parity_check(model, path, spec, images, tta_flip=args.tta_flip)
    meta_ok = {k: v for k, v in check_metadata(path).items() if k.startswith("affectwatch.")}
    print(f"exported {path}; ONNX Runtime vs torch max |Δlogit| = {parity['max_abs_logit_diff']:.3g}", file=sys.stderr)
    if parity["max_abs_logit_diff"] > args.tolerance:
        raise SystemExit(f"parity check failed: max |Δlogit| {parity['max_abs_logit_diff']:.3g} > {args.tolerance}")
    _dump({"onnx": str(path), "parity": parity, "metadata": meta_ok})


def cmd_build_engine(args, *_):
    """The edge agent's builder (engine and `.engine.json` sidecar): an engine built here
    loads in the agent exactly like one built on the board."""
    from edge_agent.classifier import ModelError
    from edge_agent.engine import build_engine

    try:
        path = build_engine(args.onnx, args.out, fp16=not args.fp32, max_batch=args.max_batch)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {path} and {path.with_suffix('.engine.json').name}")


def cmd_report(args, *_):
    from workers.report import model_report
    from workers.models.checkpoint import load_checkpoint

    model, ck = load_checkpoint(args.checkpoint)
    rep = model_report(model, _checkpoint_spec(ck), args.onnx)
    rep["arch"] = ck["meta"]["arch"]
    _dump(rep, args.out)


def cmd_ship(args, _load, _threads):
    import shlex

    from edge_agent.preprocess import PreprocessSpec
    from workers.model_card import ship
    from workers.models.checkpoint import load_checkpoint

    _threads(args)
    _, ck = load_checkpoint(args.checkpoint)
    data = _load(args, PreprocessSpec.from_dict(ck["meta"]["preprocess"]))
    notes = json.loads(Path(args.notes).read_text()) if args.notes else None
    ablations = {}
    for item in args.ablation or []:
        name, sep, path = item.rpartition("=")  # the name may hold "=" (λ = 1), a path rarely does
        if not sep or not path:
            raise SystemExit(f"--ablation wants NAME=CHECKPOINT, got {item!r}")
        ablations[name] = path
    earlier = []
    for card_path in args.keep_ablation or []:
        old = json.loads(Path(card_path).read_text())
        # A row keeps the version and valence rule it was measured for (rows older than the
        # card's rule field were measured under the card's rule).
        earlier += [{**row, "row": row["row"].replace("(shipped)", f"(shipped as {old['version']})"),
                     "measured_for": row.get("measured_for", old["version"]),
                     "valence_rule": row.get("valence_rule", old.get("valence_rule"))}
                    for row in old.get("ablation", [])
                    if not args.keep_row or row.get("row") in args.keep_row]
    card = ship(
        args.checkpoint, data, args.onnx, args.card, args.weights, args.val_split, args.test_split,
        tta_flip=args.flip, calibrate=not args.no_calibrate, version=args.version, notes=notes,
        figures_dir=args.figures_dir, ablations=ablations, earlier_rows=earlier,
        ship_command="python -m workers.training " + " ".join(shlex.quote(a) for a in args.argv),
        log=lambda s: print(s, file=sys.stderr),
    )
    _dump(card["headline"])


def add_subcommands(sub, _add_data_args, _spec_from_args, _load, _threads):
    p = sub.add_parser("evaluate", help="metrics, confusion matrix PNG/JSON of a checkpoint on a split")
    _add_data_args(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="PublicTest", help="comma-separated split names; empty for all images")
    p.add_argument("--tta-flip", action="store_true")
    p.add_argument("--out", default=None, help="metrics JSON; the confusion matrices go beside it")
    p.set_defaults(func=lambda a: cmd_evaluate(a, _load, _threads))

    p = sub.add_parser("crossval", help="k-fold cross-validation, mean ± std, Pearson r and Wilcoxon per fold")
    _add_data_args(p)
    p.add_argument("--split", default=None, help="restrict to these splits first (e.g. Training)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--model", default="liexnet")
    p.add_argument("--model-config", default="{}")
    p.add_argument("--size", type=int, nargs=2, default=(48, 48))
    p.add_argument("--color", choices=("gray", "rgb"), default="gray")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--tta-flip", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default=None, help="keep each fold's checkpoints here")
    p.add_argument("--out", default=None)
    p.set_defaults(func=lambda a: cmd_crossval(a, _load, _threads, _spec_from_args))

    p = sub.add_parser("export", help="ONNX with metadata, and a parity check against torch")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--version", default=None)
    p.add_argument("--dataset-name", default=None)
    p.add_argument("--tta-flip", action="store_true", help="bake test-time flip averaging into the graph")
    p.add_argument("--data", default=None, help="check parity on real images from this data set too")
    p.add_argument("--kind", default="auto")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--skip-unknown-labels", action="store_true")
    p.add_argument("--parity-images", type=int, default=256)
    p.add_argument("--tolerance", type=float, default=1e-3)
    p.set_defaults(func=lambda a: cmd_export(a, _load, _threads))

    p = sub.add_parser("build-engine", help="TensorRT FP16 engine from an exported ONNX (Jetson)")
    p.add_argument("--onnx", required=True)
    p.add_argument("--out", default=None, help="default: beside the ONNX file, as the agent looks for it")
    p.add_argument("--fp32", action="store_true")
    p.add_argument("--max-batch", type=int, default=32)
    p.set_defaults(func=cmd_build_engine)

    p = sub.add_parser("ship", help="fit the temperature on validation, test once, export ONNX + model card")
    _add_data_args(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--onnx", required=True)
    p.add_argument("--card", required=True, help="model card JSON path")
    p.add_argument("--weights", default=None, help="also save the torch checkpoint here (fine-tuning starts from it)")
    p.add_argument("--val-split", default="PublicTest")
    p.add_argument("--test-split", default="PrivateTest")
    p.add_argument("--flip", action="store_true", help="bake test-time flip into the ONNX graph (2x the cost)")
    p.add_argument("--no-calibrate", action="store_true", help="do not fit and fold in a temperature")
    p.add_argument("--version", default="liexnet-fer2013@2")
    p.add_argument("--ablation", action="append", metavar="NAME=CHECKPOINT",
                   help="a row of the card's ablation table (repeatable)")
    p.add_argument("--keep-ablation", action="append", metavar="CARD",
                   help="carry the ablation rows an earlier card measured (same splits) into this one")
    p.add_argument("--keep-row", action="append", metavar="NAME", help="with --keep-ablation: only these rows")
    p.add_argument("--notes", default=None, help="JSON merged into the card (what was tried, and what it gave)")
    p.add_argument("--figures-dir", default=None, help="confusion matrices and reliability diagram (PNG)")
    p.set_defaults(func=lambda a: cmd_ship(a, _load, _threads))

    p = sub.add_parser("report", help="parameters, FLOPs, peak inference memory, ONNX Runtime latency")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--onnx", default=None)
    p.add_argument("--out", default=None)
    p.set_defaults(func=cmd_report)
