"""Sweep scaling: the wall time of one grid with 1 and with 2 single-thread workers (yukti.sweep).

The grid: jet_dnn (dense) and cluster_cnn (Conv2D) x cpp, onnxruntime x batch 1, 64, 1024, one
thread per cell (12 cells), each with the same timing policy, on a LocalCluster with `--workers 1`
then `--workers 2`, each into a fresh store. The wall time is the whole `yukti.sweep` call (spec,
cluster start, every cell, cluster stop): what a user waits for. A warm-up sweep first trains the
zoo models and builds the compiled artifacts into the cache, so that neither timed run pays for
them. Target on a 2-core machine: 2 workers take <= 0.6 x the time of 1. Each cell runs with the
sweep's defaults but for the timing budget (--time-budget); about 7 s of each sweep here is fixed
(cluster start and stop, each worker importing its frameworks once), so much shorter cells
(--eval-samples 2000) measure that more than the scaling.
Run:
    python benchmarks/sweep_scaling.py [--time-budget S] [--no-warmup]

asv imports every module of this folder to discover benchmarks: this one imports only the standard
library at import time and defines no function whose name asv would take for a benchmark.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

MODELS = ("jet_dnn", "cluster_cnn")
BACKENDS = ("cpp", "onnxruntime")
BATCHES = (1, 64, 1024)
TARGET_RATIO = 0.6


def grid(time_budget_s: float, eval_samples: int | None) -> dict[str, Any]:
    """The sweep spec (as yukti.sweep takes a TOML file's content); eval_samples None: the sweep's default."""
    spec = {"name": "sweep-scaling", "models": list(MODELS), "backends": list(BACKENDS), "batch_sizes": list(BATCHES),
            "threads": [1], "timing": {"time_budget_s": time_budget_s, "min_calls": 100}}
    return spec if eval_samples is None else {**spec, "eval_samples": eval_samples}


def run_grid(spec: dict[str, Any], workers: int, store: Path) -> tuple[float, Any]:
    """(seconds, the per-cell frame) of one sweep of `spec` with `workers` worker processes."""
    import yukti

    started = time.perf_counter()
    frame = yukti.sweep(spec, workers=workers, store=store)
    return time.perf_counter() - started, frame


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time-budget", type=float, default=1.0, help="seconds of timed calls per cell (default 1.0)")
    # The sweep's own default (yukti.benchmark's 20,000 samples): the cells a user's sweep runs. Shorter cells
    # weigh the fixed cost (cluster start and stop, each worker importing its frameworks: ~7 s here) more.
    parser.add_argument("--eval-samples", type=int, default=None,
                        help="samples of each cell's accuracy check (default: the sweep's, as a spec without eval_samples)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up sweep (caches already hold everything)")
    args = parser.parse_args(argv)
    spec = grid(args.time_budget, args.eval_samples)
    cells = len(MODELS) * len(BACKENDS) * len(BATCHES)
    print(f"grid: {cells} cells ({', '.join(MODELS)} x {', '.join(BACKENDS)} x batch {', '.join(map(str, BATCHES))}), "
          f"1 thread each, time budget {args.time_budget} s per cell", flush=True)
    with tempfile.TemporaryDirectory(prefix="yukti-sweep-scaling-") as folder:
        if not args.no_warmup:
            seconds, _ = run_grid(spec, 2, Path(folder) / "warmup")
            print(f"warm-up (2 workers, not compared): {seconds:.1f} s", flush=True)
        walls = {}
        for workers in (1, 2):
            walls[workers], frame = run_grid(spec, workers, Path(folder) / f"workers-{workers}")
            bad = frame[frame["status"] != "ok"]
            print(f"workers {workers}: {walls[workers]:.1f} s ({len(frame) - len(bad)} of {len(frame)} cells ok)", flush=True)
            if len(bad):
                print(bad[["model", "backend", "batch_size", "status", "error"]].to_string(index=False), file=sys.stderr)
    ratio = walls[2] / walls[1]
    print(f"ratio (2 workers / 1 worker): {ratio:.2f} (target <= {TARGET_RATIO})", flush=True)
    return 0


if __name__ == "__main__":  # the guard matters: the LocalCluster's workers are spawned processes
    sys.exit(main())
