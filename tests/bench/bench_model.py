"""ONNX Runtime against torch eager for the shipped model, on the CPU.

    python -m tests.bench.bench_model [--repeats 5] [--threads 2]

Batch-1 latency (the edge case: one face at a time) and batch-64 throughput (a crowded
frame, or offline scoring) of edge_agent/models/liexnet-fer2013.onnx in ONNX Runtime and
of the same network in torch eager mode (the trainer's checkpoint shipped beside it,
liexnet-fer2013.pt), in one run, with the same thread count. Each
repeat times many calls; the reported figure is the median over repeats. Writes
bench-results/model.json and bench-results/model.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench-results"
SHIPPED = ROOT / "edge_agent" / "models" / "liexnet-fer2013.onnx"
CARD = SHIPPED.with_suffix(".json")
WEIGHTS = SHIPPED.with_suffix(".pt")  # the trainer's checkpoint of the shipped network


def machine() -> dict:
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


def torch_model(meta: dict, card_path: Path, weights_path: Path):
    """The shipped network in torch eager mode; (model, where its weights came from)."""
    import torch

    from workers.export import FlipAveraged
    from workers.models import create_model

    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    arch = meta["affectwatch.arch"]
    base = arch.removesuffix("+flip")
    if weights_path.exists():
        ck = torch.load(weights_path, map_location="cpu", weights_only=False)
        model = create_model(ck["meta"]["arch"], **ck["meta"]["model_config"])
        model.load_state_dict(ck["model"])
        source = str(weights_path.relative_to(ROOT)) if weights_path.is_relative_to(ROOT) else str(weights_path)
    else:
        model = create_model(base, **card.get("model_config", {}))
        source = "random weights (no trained weights found; speed does not depend on them)"
    model.eval()
    width = int(card.get("preprocess", {}).get("size", [48, 48])[1])
    return (FlipAveraged(model, width) if arch.endswith("+flip") else model), source


def time_calls(fn, x, calls: int) -> float:
    """Median seconds per call over `calls` calls."""
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=SHIPPED)
    ap.add_argument("--weights", type=Path, default=WEIGHTS, help="torch state_dict of the same network")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200, help="batch-1 calls per repeat")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batch-calls", type=int, default=20, help="large-batch calls per repeat")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args(argv)

    import torch

    from edge_agent.preprocess import PreprocessSpec
    from workers.export import check_metadata, onnx_session

    if not args.model.exists():
        print(f"{args.model} not found: train and export the model first (docs/model.md)", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    meta = check_metadata(args.model)
    spec: PreprocessSpec = meta["spec"]
    sess = onnx_session(args.model, args.threads)
    name = sess.get_inputs()[0].name
    model, weights = torch_model(meta, args.model.with_suffix(".json"), args.weights)
    h, w = spec.size
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, spec.channels, h, w)).astype(np.float32)
    xb = rng.standard_normal((args.batch, spec.channels, h, w)).astype(np.float32)
    t1, tb = torch.from_numpy(x1), torch.from_numpy(xb)

    def ort_run(x):
        return sess.run(None, {name: x})[0]

    def torch_run(x):
        with torch.inference_mode():
            return model(x)

    with torch.inference_mode():
        delta = float(np.abs(ort_run(xb) - model(tb).numpy()).max())
    info = machine()
    print(f"{args.model.name} on {info['cpu']}, {args.threads} threads; max |Δlogit| ORT vs torch {delta:.2e}", file=sys.stderr)
    for _ in range(20):  # warm-up: allocator, thread pools, ORT's first-run planning
        ort_run(x1), torch_run(t1)
    ort_run(xb), torch_run(tb)

    samples = {"onnxruntime": {"b1": [], "bN": []}, "torch": {"b1": [], "bN": []}}
    for r in range(args.repeats):
        # Alternate the order so a slow spell of a shared machine hits both.
        order = [("onnxruntime", ort_run, x1, xb), ("torch", torch_run, t1, tb)]
        for engine, fn, a, b in order if r % 2 == 0 else order[::-1]:
            samples[engine]["b1"].append(time_calls(fn, a, args.calls))
            samples[engine]["bN"].append(time_calls(fn, b, args.batch_calls))
        print(f"repeat {r + 1}/{args.repeats}: ORT {samples['onnxruntime']['b1'][-1] * 1e3:.3f} ms, "
              f"torch {samples['torch']['b1'][-1] * 1e3:.3f} ms at batch 1", file=sys.stderr)

    def summary(engine):
        b1 = statistics.median(samples[engine]["b1"])
        bn = statistics.median(samples[engine]["bN"])
        return {"batch1_latency_ms": b1 * 1e3, f"batch{args.batch}_throughput_images_per_s": args.batch / bn,
                f"batch{args.batch}_ms": bn * 1e3,
                "per_repeat_batch1_ms": [v * 1e3 for v in samples[engine]["b1"]]}

    ort, eager = summary("onnxruntime"), summary("torch")
    tp = f"batch{args.batch}_throughput_images_per_s"
    results = {
        "machine": info,
        "threads": args.threads,
        "model": {"path": str(args.model.relative_to(ROOT)) if args.model.is_relative_to(ROOT) else str(args.model),
                  "arch": meta["affectwatch.arch"], "version": meta["affectwatch.version"],
                  "torch_weights": weights, "max_abs_logit_diff": delta},
        "repeats": args.repeats,
        "onnxruntime": ort,
        "torch_eager": eager,
        "ratios": {
            "batch1_latency_torch_over_onnxruntime": eager["batch1_latency_ms"] / ort["batch1_latency_ms"],
            f"batch{args.batch}_throughput_onnxruntime_over_torch": ort[tp] / eager[tp],
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "model.md").write_text(markdown(results, args.batch))
    print((args.out / "model.md").read_text())
    return 0


def markdown(r: dict, batch: int) -> str:
    m, o, t, q = r["machine"], r["onnxruntime"], r["torch_eager"], r["ratios"]
    tp = f"batch{batch}_throughput_images_per_s"
    return "\n".join([
        "# Model inference: ONNX Runtime vs torch eager (CPU)",
        "",
        f"Model `{r['model']['path']}` ({r['model']['arch']}, {r['model']['version']}); torch weights: "
        f"{r['model']['torch_weights']}; max |Δlogit| between the two: {r['model']['max_abs_logit_diff']:.2e}.",
        f"Machine: {m['cpu']}, {m['cores']} cores, load average at start {m['load_average_at_start']}; "
        f"{r['threads']} threads each; torch {m['torch']}, ONNX Runtime {m['onnxruntime']}. "
        f"Medians over {r['repeats']} repeats.",
        "",
        f"| | batch-1 latency (ms) | batch-{batch} throughput (images/s) |",
        "|---|---:|---:|",
        f"| ONNX Runtime | {o['batch1_latency_ms']:.3f} | {o[tp]:,.0f} |",
        f"| torch eager | {t['batch1_latency_ms']:.3f} | {t[tp]:,.0f} |",
        f"| ratio | torch / ORT = {q['batch1_latency_torch_over_onnxruntime']:.2f}× | "
        f"ORT / torch = {q[f'batch{batch}_throughput_onnxruntime_over_torch']:.2f}× |",
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
