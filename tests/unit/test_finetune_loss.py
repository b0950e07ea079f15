"""The worker-weighted loss of the LiExNet paper, on known tensors:
L = −(1/N) Σᵢ wᵢ Σ_d y_{i,d} log p_{i,d}, wᵢ = w for working subjects, 1 otherwise."""
import math

import numpy as np
import pytest
import torch

from workers.finetune import replace_head, sample_weights, subject_splits
from workers.training.losses import soft_targets, weighted_cross_entropy


def test_sample_weights_give_w_to_workers_and_one_to_everyone_else():
    w = sample_weights([True, False, True, False], 3.0)
    assert w.dtype == np.float32
    assert w.tolist() == [3.0, 1.0, 3.0, 1.0]


def test_w_scales_the_loss_exactly_as_the_formula_says():
    # Two images. Image 0 (a worker): logits (0, 0, 0) → p = 1/3 each, label 0.
    # Image 1 (not a worker): logits (ln 2, 0, 0) → p = (1/2, 1/4, 1/4), label 2.
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0]])
    y = soft_targets(torch.tensor([0, 2]), 3)
    l0, l1 = -math.log(1 / 3), -math.log(1 / 4)  # −Σ_d y log p per image
    for w in (1.0, 1.5, 2.0, 3.0, 4.0):
        weights = torch.from_numpy(sample_weights([True, False], w))
        loss = weighted_cross_entropy(logits, y, weights)
        assert loss.item() == pytest.approx((w * l0 + 1.0 * l1) / 2, rel=1e-6)
    # w = 1 is plain cross-entropy.
    plain = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2]))
    assert weighted_cross_entropy(logits, y, torch.ones(2)).item() == pytest.approx(plain.item(), rel=1e-6)
    # Only the workers' share grows: d L / d w = l0 / N.
    lw2 = weighted_cross_entropy(logits, y, torch.from_numpy(sample_weights([True, False], 2.0))).item()
    lw3 = weighted_cross_entropy(logits, y, torch.from_numpy(sample_weights([True, False], 3.0))).item()
    assert lw3 - lw2 == pytest.approx(l0 / 2, rel=1e-6)


def test_the_weight_scales_the_gradient_of_a_workers_image():
    logits = torch.tensor([[0.3, -0.2, 0.1]], requires_grad=True)
    y = soft_targets(torch.tensor([1]), 3)
    g = []
    for w in (1.0, 4.0):
        logits.grad = None
        weighted_cross_entropy(logits, y, torch.from_numpy(sample_weights([True], w))).backward()
        g.append(logits.grad.clone())
    assert torch.allclose(g[1], 4.0 * g[0])


@pytest.mark.parametrize("mode", ["holdout", "kfold"])
def test_no_subject_is_on_both_sides(mode):
    rng = np.random.default_rng(1)
    subjects = np.array([f"S{i % 12:02d}" for i in range(120)])
    labels = rng.integers(0, 3, 120)
    splits = subject_splits(subjects, labels, mode, test_fraction=0.4, folds=4, seed=3)
    assert len(splits) == (1 if mode == "holdout" else 4)
    tested = []
    for tr, te in splits:
        assert not set(subjects[tr]) & set(subjects[te])
        assert len(tr) + len(te) == 120
        tested += list(set(subjects[te]))
    if mode == "holdout":
        assert len(set(subjects[splits[0][1]])) == round(0.4 * 12)  # 60 / 40 of the subjects
    else:
        assert sorted(tested) == sorted(set(subjects))  # every subject tested exactly once


def test_replace_head_gives_three_outputs_and_keeps_the_features():
    from workers.models import create_model

    model = create_model("liexnet", num_classes=7)
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("features")}
    replace_head(model, 3)
    assert model.eval()(torch.zeros(2, 1, 48, 48)).shape == (2, 3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_kfold_sweep_scores_every_fold_and_w_and_retrains_the_chosen_w_on_all_images():
    from workers.finetune import BaseModel, FinetuneParams, finetune
    from edge_agent.preprocess import PreprocessSpec

    torch.set_num_threads(1)  # tiny batches: more threads only contend
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (36, 48, 48, 1), dtype=np.uint8)
    labels = np.arange(36) % 3
    subjects = np.array([f"S{i % 6}" for i in range(36)])
    workers = np.array([int(s[1:]) < 3 for s in subjects])
    base = BaseModel("liexnet", {"num_classes": 7}, None,
                     ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"), PreprocessSpec(), "test")
    seen = []
    res = finetune(images, labels, workers, subjects, base,
                   FinetuneParams(epochs=1, batch_size=8, worker_weights=[1.0, 3.0], split="kfold", folds=2,
                                  augment=False),
                   on_progress=seen.append)
    assert [r["w"] for r in res.runs] == [1.0, 3.0]
    assert all(len(r["folds"]) == 2 for r in res.runs)
    assert {(p["w"], p["fold"]) for p in seen} == {(w, k) for w in (1.0, 3.0) for k in (1, 2)} | {(res.best_w, "all")}
    assert seen[-1]["runs"] == 5  # 2 w × 2 folds + the final model on all images
    assert res.model.eval()(torch.zeros(1, 1, 48, 48)).shape == (1, 3)


def test_a_registered_version_can_be_the_base_of_the_next_fine_tune(tmp_path):
    from edge_agent.preprocess import PreprocessSpec
    from workers.finetune import BaseModel, FinetuneParams, load_base, save_weights

    base = BaseModel("liexnet", {"num_classes": 7}, None,
                     ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"), PreprocessSpec(), "test")
    model = replace_head(base.build(), 3).eval()
    path = save_weights(model, tmp_path / "weights.pt", base, FinetuneParams(), {"version": "acme-itch@1"})
    again = load_base(path)
    assert again.classes == ("negative", "neutral", "positive") and again.source == str(path)
    x = torch.randn(2, 1, 48, 48)
    assert torch.allclose(again.build().eval()(x), model(x))
