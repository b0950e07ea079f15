"""The fine-tune protocol: subjects on one side only; every choice (epoch, w, quality
gate) made on validation subjects carved from the training side; the test subjects
scored once, for the chosen model; models at chance or below their base rejected."""
import numpy as np
import pytest
import torch

from edge_agent.labels import FER2013_CLASSES
from edge_agent.preprocess import PreprocessSpec
from workers.data.synthetic import pattern_images
from workers.finetune import (BaseModel, FinetuneError, FinetuneParams, finetune, quality_gate, score,
                              subject_splits)


def _subjects(n_images, n_subjects):
    return np.array([f"S{i % n_subjects:02d}" for i in range(n_images)])


@pytest.mark.parametrize("mode", ["holdout", "kfold"])
def test_no_subject_is_on_two_sides_and_validation_comes_from_the_training_side(mode):
    rng = np.random.default_rng(1)
    subjects = _subjects(120, 12)
    labels = rng.integers(0, 3, 120)
    splits = subject_splits(subjects, labels, mode, test_fraction=0.4, folds=4, seed=3, val_fraction=0.25)
    assert len(splits) == (1 if mode == "holdout" else 4)
    tested = []
    for sp in splits:
        sides = [set(subjects[sp.train]), set(subjects[sp.val]), set(subjects[sp.test])]
        assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
        assert len(sp.train) + len(sp.val) + len(sp.test) == 120
        tested += list(sides[2])
        training_side = len(sides[0]) + len(sides[1])
        assert len(sides[1]) == max(1, round(0.25 * training_side))
    if mode == "holdout":
        assert len(set(subjects[splits[0].test])) == round(0.4 * 12)
    else:
        assert sorted(tested) == sorted(set(subjects))  # every subject tested exactly once


@pytest.mark.parametrize("mode, n_subjects, test_fraction, message", [
    ("holdout", 3, 0.4, "a test share of 0.4 of 3 subjects leaves 1 for training and validation"),
    ("holdout", 5, 0.9, "a test share of 0.9 of 5 subjects leaves 0 for training and validation"),
    ("kfold", 5, 0.4, "at least 6 subjects"),
])
def test_too_few_subjects_for_three_sides_is_a_clear_error(mode, n_subjects, test_fraction, message):
    subjects = _subjects(30, n_subjects)
    with pytest.raises(FinetuneError, match=message):
        subject_splits(subjects, np.arange(30) % 3, mode, test_fraction=test_fraction, folds=5)
    if mode == "holdout" and test_fraction == 0.4:  # one more subject is enough at the default share
        assert len(subject_splits(_subjects(30, 4), np.arange(30) % 3, mode)) == 1


def test_the_validation_carve_holds_every_class_where_it_can():
    # Each subject has one class only: a careless carve gives validation one class.
    subjects = np.array([f"S{i:02d}" for i in range(12) for _ in range(5)])
    labels = np.array([i % 3 for i in range(12) for _ in range(5)])
    for seed in range(10):
        for sp in subject_splits(subjects, labels, "kfold", folds=3, seed=seed, val_fraction=0.4):
            assert set(labels[sp.val]) == set(labels[sp.train]) | set(labels[sp.val])


def test_the_gate_rejects_what_validation_cannot_judge():
    labels = np.zeros(20, dtype=int)  # validation subjects that are all negative
    only_negative = _scores(np.zeros(20, dtype=int), labels)
    summary = {**_summary(only_negative), "per_class": only_negative["per_class"]}
    reasons = quality_gate(summary, None, "accuracy")
    assert any("hold no neutral or positive images" in r for r in reasons), reasons


def _scores(pred, labels):
    logits = np.full((len(labels), 3), -4.0)
    logits[np.arange(len(labels)), pred] = 4.0
    return score(labels, logits)


def _summary(res):
    return {"accuracy": res["accuracy"], "balanced_accuracy": res["balanced_accuracy"],
            "negative_recall": res["negative_recall"], "auc": res["auc_ovr_macro"]}


def test_the_gate_rejects_a_model_that_answers_negative_for_everything():
    # The example: learning rate 1 made a model that says "negative" to every
    # face: accuracy 0.36 (the share of negatives), AUC 0.50.
    labels = np.array([0] * 36 + [1] * 32 + [2] * 32)
    constant = _summary(_scores(np.zeros(100, dtype=int), labels))
    assert constant["accuracy"] == pytest.approx(0.36) and constant["auc"] == pytest.approx(0.5)
    reasons = quality_gate(constant, None, "negative_recall")  # negative recall 1.0 would even win a sweep
    assert any("balanced accuracy 0.333 is at chance" in r for r in reasons)
    assert any("AUC 0.500 is at chance" in r for r in reasons)


def test_the_gate_rejects_a_model_below_its_base_on_the_selecting_metric_and_passes_a_better_one():
    labels = np.array([0, 1, 2] * 30)
    good = labels.copy()
    good[:9] = (good[:9] + 1) % 3  # 90 % right
    fair = labels.copy()
    fair[:30] = (fair[:30] + 1) % 3  # 67 % right
    base, better, worse = _summary(_scores(fair, labels)), _summary(_scores(good, labels)), _summary(_scores(fair, labels))
    worse["negative_recall"] = base["negative_recall"] - 0.2
    assert quality_gate(better, base, "accuracy") == []
    reasons = quality_gate(worse, base, "negative_recall")
    assert len(reasons) == 1 and "below the base model's" in reasons[0] and "negative recall" in reasons[0]


def _images(per_class, seed):
    """Learnable (N, 48, 48, 1) uint8 images, labels in class order (so subjects, given
    round-robin, each hold every class)."""
    images, labels = pattern_images(per_class, 3, seed=seed)
    return images[..., None], labels


def _base():
    return BaseModel("liexnet", {"num_classes": 7}, None, FER2013_CLASSES, PreprocessSpec(), "test")


def test_a_sweep_chooses_w_on_validation_and_scores_only_that_w_on_test():
    torch.set_num_threads(1)  # tiny batches: more threads only contend
    images, labels = _images(24, seed=5)  # 72 learnable images, 3 classes
    subjects = _subjects(len(labels), 8)
    workers = np.array([int(s[1:]) < 4 for s in subjects])
    seen = []
    res = finetune(images, labels, workers, subjects, _base(),
                   FinetuneParams(epochs=3, batch_size=8, lr=3e-3, worker_weights=[1.0, 3.0], split="kfold",
                                  folds=2, augment=False),
                   on_progress=seen.append)
    assert [r["w"] for r in res.runs] == [1.0, 3.0]
    best = max(res.runs, key=lambda r: (r["accuracy"], -abs(r["w"] - 1)))
    assert res.best_w == best["w"] and res.test["w"] == res.best_w
    # validation rows per w, test rows once
    val_sizes = [[f["n"] for f in r["folds"]] for r in res.runs]
    assert val_sizes[0] == val_sizes[1] == [sp["n_val"] for sp in res.splits[:2]]
    assert [f["n"] for f in res.test["folds"]] == [sp["n_test"] for sp in res.splits[:2]]
    # every epoch reports validation figures and the unweighted cross-entropy
    assert all(p["val_accuracy"] is not None and p["train_ce"] > 0 for p in seen)
    # the best validation epoch is what each fold kept
    for r in res.runs:
        for f in r["folds"]:
            assert 1 <= f["best_epoch"] <= 3
    # k-fold: the registered model trains on all subjects but a validation carve
    assert res.splits[-1]["fold"] == "all" and not res.splits[-1]["test_subjects"]
    assert seen[-1]["runs"] == 5 and seen[-1]["fold"] == "all"
    assert res.model(torch.zeros(1, 1, 48, 48)).shape == (1, 3)


def test_a_diverging_learning_rate_is_rejected_not_registered_as_good():
    torch.set_num_threads(1)
    images, labels = _images(20, seed=7)
    subjects = _subjects(len(labels), 6)
    res = finetune(images, labels, np.zeros(len(labels), dtype=bool), subjects, _base(),
                   FinetuneParams(epochs=2, batch_size=8, lr=1.0, augment=False))
    assert res.rejected, res.runs[0]
