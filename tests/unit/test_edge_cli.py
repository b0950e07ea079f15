"""The command line: bench, build-engine without TensorRT, not enrolled, an import rule."""
import json
import subprocess
import sys
from pathlib import Path

from tests.unit.test_edge_helpers import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]


def run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "edge_agent", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_bench_reports_backend_and_latency(tmp_path):
    res = run("bench", "--model", str(build_tiny_model(tmp_path / "m.onnx")), "--batches", "1,4", "--repeat", "3")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["backend"] == "onnxruntime:CPUExecutionProvider" and set(out["inference"]) == {"1", "4"}


def test_build_engine_without_tensorrt_says_so(tmp_path):
    res = run("build-engine", "--model", str(build_tiny_model(tmp_path / "m.onnx")))
    assert res.returncode == 2
    assert "TensorRT" in res.stderr and "do not import" in res.stderr
    assert not (tmp_path / "m.engine").exists()


def test_run_before_enrollment_is_a_clear_error(tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n[[cameras]]\nsource = "0"\n')
    res = run("run", "--config", str(cfg))
    assert res.returncode == 2 and "not enrolled" in res.stderr and "enroll --server" in res.stderr


def test_edge_agent_imports_neither_django_nor_torch():
    code = ("import sys, edge_agent.cli, edge_agent.agent, edge_agent.simulate, edge_agent.engine, "
            "edge_agent.classify, edge_agent.benchmark, edge_agent.synthetic; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'torch', 'onnx', 'rest_framework'}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.stdout.strip() == "[]", res.stdout + res.stderr
    assert not (ROOT / "platform" / "__init__.py").exists()
