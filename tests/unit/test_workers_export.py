"""Export to ONNX (metadata, dynamic batch, parity with torch), the TensorRT builder's
one builder (the agent's), evaluation metrics, cross-validation and the cost report."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_agent.labels import FER2013_CLASSES, RULE
from edge_agent.preprocess import PreprocessSpec, normalize
from workers.crossval import cross_validate
from workers.data import ImageSet
from workers.data.synthetic import pattern_images
from workers.evaluation import evaluate_logits, save_confusion
from workers.export import (
    METADATA_KEYS,
    check_metadata,
    export_onnx,
    onnx_session,
    parity_check,
)
from workers.models import create_model
from workers.report import count_flops, model_report
from workers.training.augment import AugmentConfig
from workers.training.loop import TrainConfig


pytestmark = pytest.mark.usefixtures("one_torch_thread")


SPEC = PreprocessSpec()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = create_model("liexnet")
    # Non-trivial BN statistics, so parity covers them.
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(16, 1, 48, 48))
    return m.eval()


@pytest.fixture(scope="module")
def images():
    imgs, _ = pattern_images(3, 7, seed=3)
    return imgs[..., None]


@pytest.mark.parametrize("tta_flip", [False, True])
def test_export_carries_complete_metadata_and_matches_torch(model, images, tmp_path, tta_flip):
    path = export_onnx(model, tmp_path / "m.onnx", SPEC, FER2013_CLASSES, "liexnet", "liexnet-fer2013@7",
                       "fer2013", tta_flip=tta_flip)
    meta = check_metadata(path)
    assert set(METADATA_KEYS) <= set(meta)
    assert meta["labels"] == list(FER2013_CLASSES)
    assert meta["spec"] == SPEC
    assert json.loads(meta["affectwatch.preprocess"])["size"] == [48, 48]
    assert meta["affectwatch.arch"] == ("liexnet+flip" if tta_flip else "liexnet")
    assert meta["affectwatch.version"] == "liexnet-fer2013@7"
    assert meta["affectwatch.dataset"] == "fer2013"
    parity = parity_check(model, path, SPEC, images, tta_flip=tta_flip)
    assert parity["max_abs_logit_diff"] < 1e-4
    assert parity["argmax_agreement"] == 1.0
    # The batch axis is dynamic, and the export is the eval-mode graph (dropout off, BN statistics).
    sess = onnx_session(path)
    x = normalize(images[:5], SPEC)
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert out.shape == (5, 7)
    model.train()
    with torch.no_grad():
        train_mode = model(torch.from_numpy(x)).numpy()
    model.eval()
    assert np.abs(out - train_mode).max() > 1e-3 or tta_flip


def test_temperature_is_folded_into_the_graph_whose_output_stays_logits(model, images, tmp_path):
    x = normalize(images[:6], SPEC)
    with torch.no_grad():
        raw = model(torch.from_numpy(x)).numpy()
    path = export_onnx(model, tmp_path / "t.onnx", SPEC, FER2013_CLASSES, "liexnet", "1", "fer2013", temperature=2.5)
    assert float(check_metadata(path)["affectwatch.temperature"]) == 2.5
    assert not model.training  # exporting leaves the caller's model as it found it
    sess = onnx_session(path)
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert np.allclose(out, raw / 2.5, atol=1e-4)
    assert parity_check(model, path, SPEC, images, temperature=2.5)["max_abs_logit_diff"] < 1e-4
    with pytest.raises(ValueError, match="positive"):
        export_onnx(model, tmp_path / "bad.onnx", SPEC, FER2013_CLASSES, "liexnet", "1", "fer2013", temperature=0.0)


def test_missing_metadata_is_reported(model, tmp_path):
    import onnx

    path = export_onnx(model, tmp_path / "m.onnx", SPEC, FER2013_CLASSES, "liexnet", "1", "fer2013")
    m = onnx.load(str(path))
    keep = [p for p in m.metadata_props if p.key != "affectwatch.dataset"]
    del m.metadata_props[:]
    m.metadata_props.extend(keep)
    onnx.save(m, str(path))
    with pytest.raises(ValueError, match=r"missing metadata \['affectwatch.dataset'\]"):
        check_metadata(path)


def test_both_build_engine_commands_use_the_agents_builder_and_its_sidecar(model, tmp_path):
    """One engine builder: the training CLI's build-engine is the agent's, so an engine it
    writes comes with the `.engine.json` the agent checks (the bug: it used to write
    none, and the agent quietly fell back to ONNX Runtime)."""
    import subprocess
    import sys

    from edge_agent.classifier import sha256_of, tensorrt_available
    from edge_agent.engine import engine_sidecar

    path = export_onnx(model, tmp_path / "m.onnx", SPEC, FER2013_CLASSES, "liexnet", "liexnet-test@1", "fer2013")
    side = engine_sidecar(path, True, 32, "test")
    assert side["onnx_sha256"] == sha256_of(path) and side["version"] == "liexnet-test@1"
    assert side["labels"] == list(FER2013_CLASSES) and side["preprocess"] == SPEC.to_dict()
    root = Path(__file__).resolve().parents[2]
    runs = [subprocess.run([sys.executable, "-m", module, "build-engine", flag, str(path)], capture_output=True,
                           text=True, timeout=120, cwd=root) for module, flag in (("workers.training", "--onnx"),
                                                                         ("edge_agent", "--model"))]
    if not tensorrt_available():
        assert [r.returncode for r in runs] == [2, 2]
        assert runs[0].stderr.strip() == runs[1].stderr.strip() and "TensorRT" in runs[0].stderr
        assert not (tmp_path / "m.engine").exists()
    else:  # pragma: no cover - only where TensorRT is installed
        from edge_agent.classifier import load_model

        assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
        clf = load_model(path, backend="tensorrt")  # refused without a matching sidecar
        assert clf.backend.name.startswith("tensorrt")



def test_metrics_on_known_predictions(tmp_path):
    classes = list(FER2013_CLASSES)  # angry disgust fear happy sad surprise neutral
    y = np.array([0, 0, 3, 3, 6, 6, 4, 5])
    pred = np.array([0, 2, 3, 5, 6, 3, 4, 5])  # 5 right; 0→2 stays negative, 3→5 stays positive
    logits = np.full((8, 7), -5.0)
    logits[np.arange(8), pred] = 5.0
    r = evaluate_logits(y, logits, classes)
    assert r["accuracy"] == pytest.approx(5 / 8)
    assert r["confusion_matrix"][0][2] == 1 and r["confusion_matrix"][6][3] == 1
    assert r["per_class"]["angry"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert r["per_class"]["happy"]["precision"] == 0.5
    # valence: negative {0,0,4}, positive {3,3,5}, neutral {6,6}; only neutral→happy is wrong.
    assert r["valence"]["accuracy"] == pytest.approx(7 / 8)
    assert r["valence"]["negative_recall"] == 1.0
    assert -1 <= r["mcc"] <= 1 and r["mcc"] > 0.5
    assert r["auc_ovr"]["disgust"] is None  # no disgust images: undefined, not a crash
    assert r["auc_ovr"]["angry"] == pytest.approx(0.75)
    assert r["pearson_r"] > 0.5 and r["wilcoxon_p"] is not None
    files = save_confusion(r, tmp_path)
    assert {f.name for f in files} == {"confusion.json", "confusion.png", "confusion-valence.json", "confusion-valence.png"}
    assert json.loads((tmp_path / "confusion.json").read_text())["matrix"] == r["confusion_matrix"]
    perfect = evaluate_logits(y, np.eye(7)[y] * 10, classes)
    assert perfect["accuracy"] == 1.0 and perfect["wilcoxon_p"] is None  # all differences are zero


def test_crossval_reports_mean_std_and_per_fold_statistics():
    spec = PreprocessSpec(size=(16, 16))
    imgs, labels = pattern_images(8, 3, size=16, seed=4)
    data = ImageSet(imgs[..., None], labels, ("negative", "neutral", "positive"))
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2, schedule="constant", augment=AugmentConfig.off())
    res = cross_validate(data, "liexnet", {"num_classes": 3, "input_size": (16, 16)}, cfg, spec, folds=3,
                         log=lambda s: None)
    assert len(res["folds"]) == 3
    assert sum(f["n"] for f in res["folds"]) == 24
    for f in res["folds"]:
        assert {"pearson_r", "wilcoxon_p", "accuracy", "macro_f1"} <= set(f)
    s = res["summary"]["accuracy"]
    accs = [f["accuracy"] for f in res["folds"]]
    assert s["mean"] == pytest.approx(np.mean(accs)) and s["std"] == pytest.approx(np.std(accs, ddof=1))
    assert "valence_accuracy" in res["summary"]


def test_report_counts_parameters_flops_and_memory(model, tmp_path):
    flops = count_flops(model, SPEC)
    assert count_flops(model, SPEC, batch=4) == 4 * flops
    tiny = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 48 * 48, 7))
    assert count_flops(tiny, SPEC) == 2 * (4 * 9 * 48 * 48) + 2 * (4 * 48 * 48 * 7)
    path = export_onnx(model, tmp_path / "m.onnx", SPEC, FER2013_CLASSES, "liexnet", "1", "fer2013")
    rep = model_report(model, SPEC, path)
    assert rep["parameters"] == sum(p.numel() for p in model.parameters())
    mem = rep["peak_inference_memory"]
    assert mem["weight_bytes"] >= 4 * rep["parameters"]
    assert mem["activation_peak_bytes"] >= 4 * 24 * 48 * 48  # the first block's output at least
    assert rep["onnxruntime_latency_batch1"]["median_ms"] > 0


def test_ship_writes_onnx_card_and_a_checkpoint_fine_tuning_can_start_from(tmp_path):
    from workers.data import load_dataset
    from workers.data.synthetic import write_fer2013_zip
    from workers.finetune import load_base
    from workers.training.__main__ import main as cli
    from workers.model_card import ship

    data = write_fer2013_zip(tmp_path / "fer.zip", n_per_class=2)
    cli(["train", "--data", str(data), "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "run"),
         "--epochs", "1", "--batch-size", "7", "--no-progress"])
    run = tmp_path / "run" / "best.pt"
    card = ship(run, load_dataset(data, cache_dir=tmp_path / "c"), tmp_path / "m.onnx", tmp_path / "m.json",
                tmp_path / "m.pt", figures_dir=tmp_path / "fig", ablations={"plain": run}, log=lambda s: None)
    assert set(card["headline"]) >= {"privatetest_accuracy_7class", "privatetest_macro_f1",
                                     "privatetest_accuracy_3class", "privatetest_negative_recall",
                                     "privatetest_ece", "privatetest_ece_uncalibrated"}
    assert card["temperature"] > 0
    assert float(check_metadata(tmp_path / "m.onnx")["affectwatch.temperature"]) == pytest.approx(card["temperature"], rel=1e-5)
    assert card["cost"]["parameters"] <= 50_000 and card["cost"]["flops_per_image"] > 0
    assert card["parity"]["max_abs_logit_diff"] < 1e-4
    assert card["commands"]["train"].startswith("python -m workers.training train")
    assert check_metadata(tmp_path / "m.onnx")["affectwatch.arch"] == "liexnet"  # no flip unless asked
    assert [r["row"] for r in card["ablation"]][:2] == ["plain", "shipped checkpoint + test-time flip"]
    assert "logit adjustment" in card["ablation"][2]["row"]
    assert set(card["metrics"]["PrivateTest"]["per_class_recall"]) == set(FER2013_CLASSES)
    assert (tmp_path / "fig" / "reliability-privatetest.png").stat().st_size > 0
    base = load_base(tmp_path / "m.pt")
    assert base.arch == "liexnet" and base.state_dict is not None
    # A later ship keeps the rows this card measured (their checkpoints may be gone by then).
    cli(["ship", "--data", str(data), "--cache-dir", str(tmp_path / "c"), "--checkpoint", str(run),
         "--onnx", str(tmp_path / "m2.onnx"), "--card", str(tmp_path / "m2.json"), "--version", "tiny@2",
         "--keep-ablation", str(tmp_path / "m.json"), "--keep-row", "plain",
         "--ablation", f"+ valence term λ = 1={run}"])  # a row name may hold "="
    rows = json.loads((tmp_path / "m2.json").read_text())["ablation"]
    assert rows[0] == {**card["ablation"][0], "measured_for": card["version"]}
    assert rows[1]["row"] == "+ valence term λ = 1" and rows[1]["valence_rule"] == RULE and rows[1]["temperature"] > 0
    assert [r["row"] for r in rows[2:]] == [r["row"] for r in card["ablation"][1:]]  # measured anew
    # and a third keeps what the row was measured for, not the card it passed through
    cli(["ship", "--data", str(data), "--cache-dir", str(tmp_path / "c"), "--checkpoint", str(run),
         "--onnx", str(tmp_path / "m3.onnx"), "--card", str(tmp_path / "m3.json"), "--version", "tiny@3",
         "--keep-ablation", str(tmp_path / "m2.json"), "--keep-row", "plain"])
    row = json.loads((tmp_path / "m3.json").read_text())["ablation"][0]
    assert row["measured_for"] == card["version"] and row["valence_rule"] == RULE


SHIPPED = __import__("pathlib").Path(__file__).resolve().parents[2] / "edge_agent" / "models" / "liexnet-fer2013.onnx"


def test_the_shipped_model_is_self_describing_and_its_card_holds_measured_numbers():
    meta = check_metadata(SHIPPED)
    assert meta["labels"] == list(FER2013_CLASSES)
    assert meta["affectwatch.dataset"] == "fer2013"
    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    assert card["version"] == meta["affectwatch.version"]
    assert card["cost"]["parameters"] <= 50_000
    assert float(meta["affectwatch.temperature"]) == pytest.approx(card["temperature"], rel=1e-5)
    assert card["classes"] == meta["labels"]
    assert card["valence_rule"] == RULE  # the 3-class figures were measured under today's rule
    from workers.models import count_parameters
    from workers.training.loop import load_checkpoint

    net, ck = load_checkpoint(SHIPPED.with_suffix(".pt"))  # fine-tuning's start: the same network
    assert count_parameters(net) == card["cost"]["parameters"] and ck["meta"]["classes"] == card["classes"]
    assert ck["meta"]["temperature"] == pytest.approx(card["temperature"])
    from workers.finetune import load_base

    # fine-tuning scores its base on the same calibrated probabilities the agent decides on
    assert load_base(SHIPPED.with_suffix(".pt")).temperature == pytest.approx(card["temperature"])
    for key in ("privatetest_accuracy_7class", "privatetest_macro_f1", "privatetest_accuracy_3class",
                "privatetest_negative_recall"):
        assert 0 < card["headline"][key] <= 1
    assert card["cost"]["onnxruntime_cpu_latency_batch1"]["median_ms"] > 0
    assert "workers.training train" in card["commands"]["train"]
    assert "workers.training ship" in card["commands"]["ship"]
    # The model answers for a face-sized input at any batch size.
    sess = onnx_session(SHIPPED)
    for n in (1, 3):
        assert sess.run(None, {sess.get_inputs()[0].name: np.zeros((n, 1, 48, 48), np.float32)})[0].shape == (n, 7)


def test_logit_adjustment_follows_the_class_prior():
    from workers.model_card import logit_adjustment

    shift = logit_adjustment([0, 0, 1, 2], 4, tau=1.0)  # class 3 absent: counted as 1
    assert shift == pytest.approx(-np.log([2 / 4, 1 / 4, 1 / 4, 1 / 4]))
    assert logit_adjustment([0, 0, 1, 2], 4, tau=0.5) == pytest.approx(shift / 2)
