"""`make bench`: every benchmark in turn (never two at once on a 2-core machine).
Each writes bench-results/<name>.json and .md. `make bench ARGS="backend pipeline"` runs
a subset."""
import importlib
import sys
import time

BENCHES = {
    "model": "tests.bench.bench_model",
    "pipeline": "tests.bench.bench_pipeline",
    "backend": "tests.bench.bench_backend",
    "finetune": "tests.bench.bench_finetune",
    "privacy": "tests.bench.bench_privacy",
    "detection": "tests.bench.bench_detection",
    "capacity": "tests.bench.bench_capacity",
}


def main(argv):
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        t = time.perf_counter()
        module = importlib.import_module(BENCHES[name])
        module.main([])
        print(f"=== {name}: {time.perf_counter() - t:.0f} s ===", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
