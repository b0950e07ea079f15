"""The training loop and CLI on small made-up data: the loss falls, --resume continues
the same run, cancellation and callbacks work, the losses match their formulas."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workers.data.synthetic import pattern_images, write_fer2013_zip
from workers.models import create_model
from workers.training.__main__ import main as cli
from workers.training.augment import AugmentConfig, augment_batch
from workers.training.loop import TrainConfig, TrainingError, load_checkpoint
from workers.training.losses import (class_balanced_weights, distillation_loss, soft_targets, valence_cross_entropy,
                                     weighted_cross_entropy)

from edge_agent.preprocess import PreprocessSpec, normalize


pytestmark = pytest.mark.usefixtures("one_torch_thread")


FAST = dict(batch_size=8, lr=1e-2, schedule="constant", augment=AugmentConfig.off())
SPEC = PreprocessSpec(size=(16, 16))  # small images keep the tests fast; 16 px still passes 4 pools


@pytest.fixture(scope="module")
def toy():
    imgs, labels = pattern_images(16, 3, size=16, seed=1)
    val_imgs, val_labels = pattern_images(6, 3, size=16, seed=2)
    return imgs[..., None], labels, val_imgs[..., None], val_labels


def _model(seed=0):
    torch.manual_seed(seed)
    return create_model("liexnet", num_classes=3, input_size=(16, 16))


def fit(*args, **kw):
    from workers.training.loop import fit as _fit

    kw.setdefault("spec", SPEC)
    return _fit(*args, **kw)


def test_loss_falls_and_validation_beats_chance(toy, tmp_path):
    x, y, vx, vy = toy
    seen = []
    res = fit(_model(), x, y, vx, vy, config=TrainConfig(epochs=8, **FAST), out_dir=tmp_path,
              progress=False, on_epoch=seen.append, log=lambda s: None)
    losses = [m.train_loss for m in res.history]
    assert [m.epoch for m in seen] == list(range(1, 9))
    assert losses[-1] < 0.7 * losses[0]
    assert max(m.val_accuracy for m in res.history) > 0.6  # chance is 1/3
    assert (tmp_path / "last.pt").exists() and res.checkpoint == tmp_path / "best.pt"
    ck = torch.load(tmp_path / "best.pt", weights_only=False)
    assert ck["epoch"] == res.best_epoch
    assert ck["best_metric"] == pytest.approx(max(m.val_accuracy for m in res.history))


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_continues_the_same_run(toy, tmp_path, ema_decay):
    """With and without the weights' moving average (which travels in last.pt)."""
    x, y, vx, vy = toy
    cfg = TrainConfig(epochs=3, **{**FAST, "augment": AugmentConfig()}, label_smoothing=0.1, ema_decay=ema_decay)
    whole = _model()
    fit(whole, x, y, vx, vy, config=cfg, out_dir=tmp_path / "whole", progress=False, log=lambda s: None)

    # Interrupt after epoch 1 (a cancelled epoch leaves the last complete checkpoint)...
    done = []
    part = _model()
    res = fit(part, x, y, vx, vy, config=cfg, out_dir=tmp_path / "split", progress=False, log=lambda s: None,
              on_epoch=done.append, should_stop=lambda: len(done) >= 1)
    assert res.cancelled and [m.epoch for m in res.history] == [1]
    # ...then resume in a fresh model object, as a new process would.
    logs = []
    resumed = _model(seed=123)  # different init: the checkpoint must overwrite it
    res2 = fit(resumed, x, y, vx, vy, config=cfg, out_dir=tmp_path / "split", resume=True,
               progress=False, log=logs.append)
    assert any("resumed" in s and "after epoch 1" in s for s in logs)
    assert [m.epoch for m in res2.history] == [1, 2, 3]
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    # With the average, the model ends with (and best.pt holds) the averaged weights,
    # not the last step's, which last.pt keeps for resuming.
    raw = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)["model"]
    averaged = not all(torch.equal(raw[k], v) for k, v in whole.state_dict().items())
    assert averaged == (ema_decay > 0)


def test_resume_refuses_a_different_schedule(toy, tmp_path):
    x, y, _, _ = toy
    fit(_model(), x, y, config=TrainConfig(epochs=1, **FAST), out_dir=tmp_path, progress=False, log=lambda s: None)
    with pytest.raises(TrainingError, match="made for 1 epochs"):
        fit(_model(), x, y, config=TrainConfig(epochs=3, **FAST), out_dir=tmp_path, resume=True,
            progress=False, log=lambda s: None)
    group = np.eye(3, dtype=np.float32)
    with pytest.raises(TrainingError, match="valence-weight 0.0, not 1.0"):
        fit(_model(), x, y, config=TrainConfig(epochs=1, valence_weight=1.0, **FAST), valence_group=group,
            out_dir=tmp_path, resume=True, progress=False, log=lambda s: None)


def test_sample_weights_zero_out_images(toy):
    x, y, _, _ = toy
    # With weight 0 on every image of class 2, the network never learns class 2.
    w = (y != 2).astype(np.float32)
    m = _model()
    fit(m, x, y, sample_weight=w, config=TrainConfig(epochs=8, **FAST), progress=False, log=lambda s: None)
    m.eval()
    with torch.no_grad():
        pred = m(torch.from_numpy(normalize(x, SPEC))).argmax(1).numpy()
    assert not (pred == 2).any()
    assert (pred[y != 2] == y[y != 2]).mean() > 0.8


def test_labels_out_of_range_are_rejected(toy):
    x, y, _, _ = toy
    with pytest.raises(TrainingError, match="labels must lie in 0..2"):
        fit(_model(), x, y + 1, config=TrainConfig(epochs=1, **FAST), progress=False, log=lambda s: None)


def test_losses_follow_their_formulas():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    y = torch.tensor([0, 2])
    assert weighted_cross_entropy(logits, soft_targets(y, 3)).item() == pytest.approx(F.cross_entropy(logits, y).item())
    smoothed = weighted_cross_entropy(logits, soft_targets(y, 3, 0.1)).item()
    assert smoothed == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.1).item(), rel=1e-6)
    w = torch.tensor([2.0, 0.5])
    per = F.cross_entropy(logits, y, reduction="none")
    assert weighted_cross_entropy(logits, soft_targets(y, 3), w).item() == pytest.approx(((per * w).sum() / 2).item())
    teacher = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    q = soft_targets(y, 3)
    assert distillation_loss(logits, teacher, q, 0.0, 4.0).item() == pytest.approx(F.cross_entropy(logits, y).item())
    t = 4.0
    kl = F.kl_div(F.log_softmax(logits / t, 1), F.softmax(teacher / t, 1), reduction="batchmean").item()
    assert distillation_loss(logits, teacher, q, 1.0, t).item() == pytest.approx(t * t * kl, rel=1e-5)
    # the valence term: cross-entropy of the summed group probabilities
    group = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]])  # classes 0, 1 negative; 2 positive
    v = torch.tensor([0, 2])
    grouped = F.softmax(logits, 1) @ group
    expected = -(torch.log(grouped[0, 0]) + torch.log(grouped[1, 2])) / 2
    assert valence_cross_entropy(logits, v, group).item() == pytest.approx(expected.item(), rel=1e-6)
    assert valence_cross_entropy(logits, v, group, w).item() == pytest.approx(
        (-(2.0 * torch.log(grouped[0, 0]) + 0.5 * torch.log(grouped[1, 2])) / 2).item(), rel=1e-6)
    cb = class_balanced_weights([1000, 10, 100])
    assert cb[1] > cb[2] > cb[0] and cb.mean() == pytest.approx(1.0)


def test_augmentation_keeps_shape_and_is_seeded():
    x = torch.randn(8, 1, 48, 48)
    a = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(5))
    b = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(5))
    c = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(6))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(augment_batch(x, AugmentConfig.off(), torch.Generator()), x)


def test_distillation_from_a_teacher_checkpoint_through_the_cli(tmp_path, capsys):
    data = write_fer2013_zip(tmp_path / "fer.zip", n_per_class=3)
    common = ["--data", str(data), "--cache-dir", str(tmp_path / "cache"), "--batch-size", "8",
              "--no-progress", "--lr", "5e-3", "--threads", "1"]
    cli(["train", *common, "--model", "resnet_face_small", "--epochs", "1",
         "--model-config", '{"widths": [8, 8, 16, 16], "blocks_per_stage": 1}', "--out", str(tmp_path / "teacher")])
    cli(["train", *common, "--epochs", "2", "--out", str(tmp_path / "student"),
         "--teacher", str(tmp_path / "teacher" / "best.pt"), "--distill-alpha", "0.7", "--mixup", "0.2",
         "--class-balanced", "--label-smoothing", "0.1"])
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["checkpoint"].endswith("best.pt")
    model, ck = load_checkpoint(tmp_path / "student" / "best.pt")
    assert ck["meta"]["arch"] == "liexnet" and ck["meta"]["classes"][0] == "angry"
    assert "--teacher" in ck["meta"]["command"]
    # --resume of a finished run trains nothing more and keeps the history.
    cli(["train", *common, "--epochs", "2", "--out", str(tmp_path / "student"), "--resume",
         "--teacher", str(tmp_path / "teacher" / "best.pt"), "--distill-alpha", "0.7"])
    assert len(torch.load(tmp_path / "student" / "last.pt", weights_only=False)["history"]) == 2


@pytest.mark.parametrize("path", ["distillation", "cached_distillation", "class_balanced"])
def test_distillation_and_class_balanced_training_lower_the_loss(toy, path):
    from workers.predict import predict_logits

    x, y, _, _ = toy
    kw = {}
    if path.endswith("distillation"):
        teacher = _model(seed=5)
        fit(teacher, x, y, config=TrainConfig(epochs=8, **FAST), progress=False, log=lambda s: None)
        kw["teacher"] = teacher.eval()
        fast = {**FAST, "augment": AugmentConfig(rotate_deg=0, scale=0, translate=0, brightness=0, contrast=0, erase=0)}
        # 16 epochs: at 8, one thread's rounding (this module's) left class 2 unlearnt.
        cfg = TrainConfig(epochs=16, distill_alpha=0.9, distill_temperature=4.0,
                          distill_cached=path == "cached_distillation", **fast)
    else:
        # Class 2 is rare (3 of 35 images): the class-balanced weights must still teach it.
        keep = np.concatenate([np.flatnonzero(y != 2), np.flatnonzero(y == 2)[:3]])
        x, y = x[keep], y[keep]
        cfg = TrainConfig(epochs=10, class_balanced=True, **FAST)
    student = _model()
    res = fit(student, x, y, config=cfg, progress=False, log=lambda s: None, **kw)
    losses = [m.train_loss for m in res.history]
    assert losses[-1] < 0.8 * losses[0]
    pred = predict_logits(student, x, SPEC).argmax(1)
    if path.endswith("distillation"):  # the student learns to answer as its teacher does
        assert (pred == predict_logits(kw["teacher"], x, SPEC).argmax(1)).mean() > 0.7
    else:
        assert (pred[y == 2] == 2).any()


def test_valence_term_trains_the_grouped_decision(toy):
    """--valence-weight: the loss falls and the summed-group decision (labels.decide) is
    learnt; without the grouping fit refuses to start."""
    from edge_agent.labels import decide
    from edge_agent.classifier import softmax
    from workers.predict import predict_logits

    x, y, _, _ = toy
    group = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32)  # 0, 1 negative; 2 positive
    cfg = TrainConfig(epochs=8, valence_weight=1.0, **FAST)
    with pytest.raises(TrainingError, match="valence_group"):
        fit(_model(), x, y, config=cfg, progress=False, log=lambda s: None)
    with pytest.raises(TrainingError, match="must be ≥ 0"):
        fit(_model(), x, y, config=TrainConfig(epochs=1, valence_weight=-1.0, **FAST), valence_group=group,
            progress=False, log=lambda s: None)
    student = _model()
    res = fit(student, x, y, config=cfg, valence_group=group, progress=False, log=lambda s: None)
    losses = [m.train_loss for m in res.history]
    assert losses[-1] < 0.7 * losses[0]
    _, _, v, _ = decide(softmax(predict_logits(student, x, SPEC)), group)
    assert (v == group[y].argmax(1)).mean() > 0.8
