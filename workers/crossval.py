"""k-fold cross-validation: a fresh model per fold, trained with `fit`, scored with
`evaluate_logits`; mean ± std across folds, and per fold the paper's Pearson r and
Wilcoxon signed-rank test."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from edge_agent.preprocess import PreprocessSpec

from .data import ImageSet
from .evaluation import evaluate_logits, summarize_folds
from .models import create_model
from .predict import predict_logits
from .training.loop import TrainConfig, fit


def cross_validate(
    data: ImageSet,
    arch: str,
    model_config: dict,
    config: TrainConfig,
    spec: PreprocessSpec = PreprocessSpec(),
    folds: int = 5,
    out_dir=None,
    tta_flip: bool = False,
    log=print,
    on_fold: Callable[[int, dict], None] | None = None,
) -> dict:
    if folds < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    results = []
    for k, (tr, te) in enumerate(skf.split(np.zeros(len(data)), data.labels), start=1):
        torch.manual_seed(config.seed + k)
        model = create_model(arch, **model_config)
        fold_dir = Path(out_dir) / f"fold{k}" if out_dir else None
        # Each fold trains without peeking at its test part: no validation set, the
        # last epoch's weights are scored.
        fit(model, data.images[tr], data.labels[tr], spec=spec, config=config, num_classes=len(data.classes),
            out_dir=fold_dir, progress=False, log=lambda s, k=k: log(f"fold {k}/{folds}: {s}"))
        logits = predict_logits(model, data.images[te], spec, tta_flip=tta_flip)
        res = evaluate_logits(data.labels[te], logits, data.classes)
        res["fold"] = k
        results.append(res)
        log(
            f"fold {k}/{folds}: accuracy {res['accuracy']:.4f} macro-F1 {res['macro_f1']:.4f} "
            f"Pearson r {res['pearson_r']} Wilcoxon p {res['wilcoxon_p']}"
        )
        if on_fold:
            on_fold(k, res)
    return {"folds": results, "summary": summarize_folds(results), "k": folds, "arch": arch}
