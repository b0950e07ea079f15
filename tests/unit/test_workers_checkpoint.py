"""The one checkpoint module (save, load, rebuild) and each registered network's head
replacement; the shipped and teacher checkpoints still load and compute what they did."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from workers.models import (CheckpointError, build_model, create_model, list_models, load_checkpoint,
                            read_checkpoint, replace_head, save_checkpoint)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "edge_agent" / "models" / "liexnet-fer2013.pt"
TEACHER = ROOT / "workers" / "teacher" / "resnet_face_small-fer2013.pt"


def _old_replace_head(model, num_classes, seed=0):
    """What fine-tuning did before each network had its hook: the last nn.Linear, found by search."""
    parent, name, last = None, None, None
    for _, module in model.named_modules():
        for child_name, child in module.named_children():
            if isinstance(child, nn.Linear):
                parent, name, last = module, child_name, child
    g = torch.Generator().manual_seed(seed)
    head = nn.Linear(last.in_features, num_classes)
    with torch.no_grad():
        bound = 1.0 / max(last.in_features, 1) ** 0.5
        head.weight.uniform_(-bound, bound, generator=g)
        head.bias.uniform_(-bound, bound, generator=g)
    setattr(parent, name, head)
    return model


def _small(name):
    config = {"num_classes": 7}
    if name.startswith("resnet_face"):
        config["widths"] = [8, 8, 16, 16]
    return config


@pytest.mark.parametrize("name", list_models())
def test_every_registered_network_replaces_its_head_as_fine_tuning_did(name):
    torch.manual_seed(0)
    model = create_model(name, **_small(name))
    old = _old_replace_head(create_model(name, **_small(name)), 3, seed=5)
    old.load_state_dict({k: v for k, v in model.state_dict().items() if k in old.state_dict()
                         and v.shape == old.state_dict()[k].shape}, strict=False)
    features = {k: v.clone() for k, v in model.state_dict().items()}
    assert replace_head(model, 3, seed=5) is model
    x = torch.randn(2, 1, 48, 48)
    assert model.eval()(x).shape == (2, 3)
    after = model.state_dict()
    changed = {k for k in after if k not in features or not torch.equal(features[k], after[k])}
    assert len(changed) == 2 and all(k.endswith(("weight", "bias")) for k in changed)  # only the last layer
    assert set(after) == set(old.state_dict())  # the same keys as before: old weights files still load
    assert all(torch.equal(after[k], old.state_dict()[k]) for k in changed)  # the same fresh head


def test_a_network_without_the_hook_is_refused():
    from workers.finetune import FinetuneError, replace_head as ft_replace_head

    with pytest.raises(TypeError, match="reset_classifier"):
        replace_head(nn.Sequential(nn.Linear(2, 2)), 3)
    with pytest.raises(FinetuneError, match="cannot replace its head"):
        ft_replace_head(nn.Sequential(nn.Linear(2, 2)), 3)


def test_the_checkpoint_round_trip_rebuilds_the_network(tmp_path):
    meta = {"arch": "liexnet", "model_config": {"num_classes": 3, "hidden": 8}, "classes": ["a", "b", "c"],
            "preprocess": {"size": [48, 48]}}
    torch.manual_seed(1)
    model = build_model("liexnet", meta["model_config"]).eval()
    path = save_checkpoint(tmp_path / "deep" / "m.pt", model, meta, epoch=4, config={"epochs": 9},
                           history=[{"epoch": 1}], best_metric=0.5, best_epoch=3)
    assert path.is_file() and not list(path.parent.glob("*.tmp"))  # written through a temporary file
    again, ck = load_checkpoint(path)
    x = torch.randn(3, 1, 48, 48)
    assert torch.equal(again(x), model(x)) and not again.training
    assert ck["meta"] == meta and ck["epoch"] == 4 and ck["history"] == [{"epoch": 1}]
    assert (ck["best_metric"], ck["best_epoch"], ck["config"]) == (0.5, 3, {"epochs": 9})
    assert "optimizer" not in ck
    assert set(read_checkpoint(path)) == {"model", "meta", "epoch", "config", "history", "best_metric", "best_epoch"}


def test_a_file_without_architecture_is_not_a_checkpoint(tmp_path):
    torch.save({"model": {}}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="no architecture metadata"):
        load_checkpoint(tmp_path / "x.pt")


def test_the_shipped_checkpoint_still_computes_the_shipped_model():
    """The .pt fine-tuning starts from, loaded through the checkpoint module, gives the
    logits the shipped ONNX file gives (which folds in T): the network is unchanged."""
    from workers.export import onnx_session

    net, ck = load_checkpoint(SHIPPED)
    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    assert ck["meta"]["arch"] == "liexnet" and "+flip" not in card["arch"]
    x = np.random.default_rng(0).random((4, 1, 48, 48), dtype=np.float32)
    sess = onnx_session(SHIPPED.with_suffix(".onnx"))
    onnx_logits = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        torch_logits = net(torch.from_numpy(x)).numpy() / ck["meta"]["temperature"]
    assert np.abs(onnx_logits - torch_logits).max() < 1e-4


@pytest.mark.parametrize("path", [SHIPPED, TEACHER], ids=["shipped", "teacher"])
def test_shipped_files_load_as_init_teacher_and_fine_tuning_base(path):
    from workers.finetune import load_base

    raw = torch.load(path, map_location="cpu", weights_only=False)  # the file as written before the module
    net, ck = load_checkpoint(path)
    old = create_model(raw["meta"]["arch"], **raw["meta"].get("model_config", {}))
    old.load_state_dict(raw["model"])
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(net(x), old.eval()(x))
        assert torch.equal(load_base(path).build().eval()(x), net(x))
