"""The worker-weighted loss of the LiExNet paper, on known tensors:
L = −(1/N) Σᵢ wᵢ Σ_d y_{i,d} log p_{i,d}, wᵢ = w for working subjects, 1 otherwise."""
import math

import numpy as np
import pytest
import torch

from workers.finetune import replace_head, sample_weights
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


def test_replace_head_gives_three_outputs_and_keeps_the_features():
    from workers.models import create_model

    model = create_model("liexnet", num_classes=7)
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("features")}
    replace_head(model, 3)
    assert model.eval()(torch.zeros(2, 1, 48, 48)).shape == (2, 3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


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
