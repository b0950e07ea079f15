"""Train / validation / test splits by subject, so no person is on two sides."""
import numpy as np

from workers.finetune import subject_splits


def split_preview(dataset, mode="holdout", test_fraction=0.4, folds=5, seed=0, val_fraction=0.25) -> list[dict]:
    """Per fold, each side's subjects, image count, worker count and labels — the very
    split a fine-tune with these options makes. Raises FinetuneError like the job."""
    rows = list(dataset.samples.values_list("subject__code", "label", "subject__is_worker"))
    if not rows:
        return []
    codes = np.array([r[0] for r in rows])
    labels = np.array([r[1] for r in rows])
    workers = np.array([r[2] for r in rows])
    out = []
    for k, sp in enumerate(subject_splits(codes, labels, mode, test_fraction, folds, seed, val_fraction), start=1):
        side = {}
        for name, idx in (("train", sp.train), ("validation", sp.val), ("test", sp.test)):
            side[name] = {
                "subjects": sorted({str(c) for c in codes[idx]}),
                "samples": int(len(idx)),
                "workers": int(len({c for c, w in zip(codes[idx], workers[idx]) if w})),
                "labels": {lab: int((labels[idx] == lab).sum()) for lab in ("negative", "neutral", "positive")},
            }
        out.append({"fold": k, **side})
    return out
