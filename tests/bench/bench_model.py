"""The shipped model against its peer, in one run on one machine (CPU).

    python -m tests.bench.bench_model [--repeats 5] [--threads 2]

Rows: the shipped LiExNet in ONNX Runtime (one pass, as shipped), the same network with
test-time flip in the graph (exported here for the comparison), the same network in
torch eager mode, and the public mini-Xception FER2013 model (the peer, read from
`<AFFECTWATCH_MODELS>/peer/mini_xception_fer2013.onnx`, default `../shared/models`;
the row is left out with a note where it is absent). For each: parameters, batch-1
latency (one face at a time, the edge case) and batch-64 throughput (a crowded frame),
medians over repeats with the engines interleaved, so a slow spell of a shared machine
hits them all; and, where the FER2013 archive is present (`AFFECTWATCH_DATASETS`,
default `../shared/datasets`), PrivateTest accuracy (7 classes, 3 classes under
`edge_agent.labels.decide`) and ECE computed from each ONNX file's own output.
Writes bench-results/model.json and bench-results/model.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.support import dataset_path, shared_model

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench-results"
SHIPPED = ROOT / "edge_agent" / "models" / "liexnet-fer2013.onnx"
WEIGHTS = SHIPPED.with_suffix(".pt")  # the trainer's checkpoint of the shipped network
PEER = shared_model("peer/mini_xception_fer2013.onnx")
FER_ZIP = dataset_path("fer2013/fer2013.zip")


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


def onnx_parameters(path: Path) -> int:
    """Learned weights stored in the graph: float initializers, less batch-norm running
    statistics (BatchNormalization inputs 3 and 4), which are not parameters."""
    import onnx

    m = onnx.load(str(path))
    stats = {name for n in m.graph.node if n.op_type == "BatchNormalization" for name in n.input[3:5]}
    return int(sum(np.prod(t.dims) for t in m.graph.initializer
                   if t.data_type == onnx.TensorProto.FLOAT and t.name not in stats))


def time_calls(fn, x, calls: int) -> float:
    """Median seconds per call over `calls` calls."""
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class Row:
    """One model under one engine: a callable on NCHW float32 batches and its input spec."""

    def __init__(self, name, run, spec, labels, parameters, outputs="logits"):
        self.name, self.run, self.spec, self.labels = name, run, spec, labels
        self.parameters, self.outputs = parameters, outputs


def onnx_row(name, path: Path, threads: int) -> Row:
    from edge_agent.preprocess import PreprocessSpec
    from workers.export import onnx_session, read_metadata

    meta = read_metadata(path)
    sess = onnx_session(path, threads)
    inp = sess.get_inputs()[0].name
    # The peer's graph ends in softmax (its README says so); ours ends in logits.
    outputs = "probabilities" if "peer" in meta.get("affectwatch.arch", "") else "logits"
    return Row(name, lambda x: sess.run(None, {inp: x})[0], PreprocessSpec.from_json(meta["affectwatch.preprocess"]),
               json.loads(meta["affectwatch.labels"]), onnx_parameters(path), outputs)


def rows_for(args, tmp: Path) -> tuple[list[Row], dict]:
    import torch

    from workers.export import export_onnx
    from workers.training.loop import load_checkpoint

    model, ck = load_checkpoint(args.weights)
    meta = ck["meta"]
    t = float(meta.get("temperature", 1.0))
    shipped = onnx_row("LiExNet (shipped, ONNX Runtime)", args.model, args.threads)
    flip_path = export_onnx(model, tmp / "flip.onnx", shipped.spec, meta["classes"], meta["arch"], "bench", "fer2013",
                            tta_flip=True, temperature=t)
    rows = [shipped, onnx_row("LiExNet + test-time flip (ONNX Runtime)", flip_path, args.threads)]

    def eager(x):
        with torch.inference_mode():
            return (model(torch.from_numpy(x)) / t).numpy()

    rows.append(Row("LiExNet (torch eager)", eager, shipped.spec, shipped.labels,
                    int(sum(p.numel() for p in model.parameters()))))
    notes = {}
    if PEER.exists():
        rows.append(onnx_row("mini-Xception (peer, ONNX Runtime)", PEER, args.threads))
    else:
        notes["peer"] = f"{PEER} not found: the peer row is left out"
    return rows, notes


def accuracy(row: Row, cache: dict) -> dict:
    """PrivateTest metrics of a row's own output (7 classes, 3 under decide, ECE)."""
    from workers.data import load_dataset
    from workers.evaluation import evaluate_logits

    key = row.spec.to_json()
    if key not in cache:
        cache[key] = load_dataset(FER_ZIP, spec=row.spec).where_split("PrivateTest")
    test = cache[key]
    from edge_agent.preprocess import normalize

    x = normalize(test.images, row.spec)
    out = np.concatenate([row.run(x[i:i + 512]) for i in range(0, len(x), 512)]).astype(np.float64)
    logits = np.log(np.clip(out, 1e-12, 1)) if row.outputs == "probabilities" else out
    order = [row.labels.index(c) for c in test.classes]  # the data's class order
    res = evaluate_logits(test.labels, logits[:, order], test.classes)
    return {"privatetest_accuracy_7class": res["accuracy"], "privatetest_accuracy_3class": res["valence"]["accuracy"],
            "privatetest_macro_f1": res["macro_f1"], "privatetest_ece": res["ece"], "n": res["n"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=SHIPPED)
    ap.add_argument("--weights", type=Path, default=WEIGHTS, help="the trainer's checkpoint of the same network")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200, help="batch-1 calls per repeat")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batch-calls", type=int, default=20, help="large-batch calls per repeat")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args(argv)

    import torch

    for p in (args.model, args.weights):
        if not p.exists():
            print(f"{p} not found: train and ship the model first (docs/model.md)", file=sys.stderr)
            return 1
    torch.set_num_threads(args.threads)
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        rows, notes = rows_for(args, Path(tmp))
        rng = np.random.default_rng(0)
        inputs = {}
        for r in rows:
            h, w = r.spec.size
            inputs[r.name] = (rng.standard_normal((1, r.spec.channels, h, w)).astype(np.float32),
                              rng.standard_normal((args.batch, r.spec.channels, h, w)).astype(np.float32))
            for _ in range(20):  # warm-up: allocator, thread pools, ORT's first-run planning
                r.run(inputs[r.name][0])
            r.run(inputs[r.name][1])
        samples = {r.name: {"b1": [], "bN": []} for r in rows}
        for rep in range(args.repeats):
            for r in rows if rep % 2 == 0 else rows[::-1]:
                x1, xb = inputs[r.name]
                samples[r.name]["b1"].append(time_calls(r.run, x1, args.calls))
                samples[r.name]["bN"].append(time_calls(r.run, xb, args.batch_calls))
            print(f"repeat {rep + 1}/{args.repeats}: " + ", ".join(
                f"{r.name.split(' (')[0]} {samples[r.name]['b1'][-1] * 1e3:.3f} ms" for r in rows), file=sys.stderr)
        cache: dict = {}
        results_rows = []
        for r in rows:
            b1, bn = statistics.median(samples[r.name]["b1"]), statistics.median(samples[r.name]["bN"])
            row = {"name": r.name, "parameters": r.parameters, "input": list(r.spec.size),
                   "batch1_latency_ms": b1 * 1e3, "batch_throughput_images_per_s": args.batch / bn,
                   "per_repeat_batch1_ms": [v * 1e3 for v in samples[r.name]["b1"]]}
            if FER_ZIP.exists():
                row.update(accuracy(r, cache))
            results_rows.append(row)
    if not FER_ZIP.exists():
        notes["accuracy"] = f"{FER_ZIP} not found: no accuracy columns"
    peer = next((r for r in results_rows if "peer" in r["name"]), None)
    ours = results_rows[0]
    ratios = {}
    if peer:
        ratios = {"batch1_latency_peer_over_ours": peer["batch1_latency_ms"] / ours["batch1_latency_ms"],
                  "batch_throughput_ours_over_peer": ours["batch_throughput_images_per_s"] / peer["batch_throughput_images_per_s"],
                  "batch1_latency_flip_over_one_pass": results_rows[1]["batch1_latency_ms"] / ours["batch1_latency_ms"]}
    results = {"machine": info, "threads": args.threads, "batch": args.batch, "repeats": args.repeats,
               "model": {"path": str(args.model.relative_to(ROOT)) if args.model.is_relative_to(ROOT) else str(args.model)},
               "rows": results_rows, "ratios": ratios, "notes": notes}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "model.md").write_text(markdown(results))
    print((args.out / "model.md").read_text())
    return 0


def markdown(r: dict) -> str:
    m = r["machine"]
    has_acc = any("privatetest_accuracy_7class" in row for row in r["rows"])
    head = f"| | parameters | input | batch-1 latency (ms) | batch-{r['batch']} throughput (faces/s) |"
    sep = "|---|---:|---:|---:|---:|"
    if has_acc:
        head += " PrivateTest 7-class | 3-class | ECE |"
        sep += "---:|---:|---:|"
    lines = ["# Model inference and accuracy: LiExNet against the peer (CPU)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, load average at start {m['load_average_at_start']}; "
             f"{r['threads']} threads each; torch {m['torch']}, ONNX Runtime {m['onnxruntime']}. "
             f"Medians over {r['repeats']} interleaved repeats.", "", head, sep]
    for row in r["rows"]:
        line = (f"| {row['name']} | {row['parameters']:,} | {row['input'][0]}×{row['input'][1]} | "
                f"{row['batch1_latency_ms']:.3f} | {row['batch_throughput_images_per_s']:,.0f} |")
        if has_acc:
            line += (f" {row['privatetest_accuracy_7class']:.1%} | {row['privatetest_accuracy_3class']:.1%} | "
                     f"{row['privatetest_ece']:.3f} |")
        lines.append(line)
    q = r["ratios"]
    if q:
        lines += ["", f"Peer / ours batch-1 latency: {q['batch1_latency_peer_over_ours']:.2f}×; ours / peer batch "
                      f"throughput: {q['batch_throughput_ours_over_peer']:.2f}×; flip / one pass latency: "
                      f"{q['batch1_latency_flip_over_one_pass']:.2f}×."]
    lines += [f"\n{v}" for v in r["notes"].values()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
