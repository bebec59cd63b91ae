"""Store load: how long `yukti.results.load()` takes on a results store of many small runs.

A sweep (issue 15) stores one file per cell, so a store of thousands of runs is ordinary. This
script writes N runs (default 10,000) into a temporary store with `yukti.results.write_run`, each
1 to 3 rows of a real benchmark frame (jet_dnn on onnxruntime and reference, measured once with a
short policy and store=False) with its own run_id, timestamp and host (one of a few), then loads
the store in fresh processes and prints each load's time.
Run:
    python benchmarks/store_load.py [--n N] [--store DIR] [--repeats R] [--results-module FILE]

The loads use a cache folder of their own (YUKTI_CACHE_DIR), empty at first: the first load reads
every file and writes the store's index there (yukti.results.read_store), the later ones (R - 1,
default 2) read the index and only the files that are new since. Each load runs in a fresh
interpreter (no pandas/pyarrow state, nothing kept in memory by yukti); the files themselves are
in the OS page cache after writing, as they are for a store read again and again. The time
printed is of the `load` call alone; importing yukti.results is printed apart.

`--store DIR`: write into DIR and keep it (a DIR that already holds runs is loaded as it is: the
second call skips the writing). `--results-module FILE`: load with the results.py at FILE instead
of the installed one, e.g. the version before a change, to compare on the same store:
    git show HEAD:yukti/results.py > /tmp/results_before.py
    python benchmarks/store_load.py --store /tmp/store10k --results-module /tmp/results_before.py

asv imports every module of this folder to discover benchmarks: this one imports only the
standard library at import time and defines no function whose name asv would take for a benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

N_RUNS = 10_000
HOSTS = ("node01", "node02", "gpu07", "fpga-host")
BACKENDS = ("onnxruntime", "reference")
REPEATS = 3

# Run in a fresh interpreter: argv = store, results module file or "" for the installed one.
_LOAD = r"""
import importlib.util, json, sys, time
t0 = time.perf_counter()
if sys.argv[2]:
    spec = importlib.util.spec_from_file_location("results_under_test", sys.argv[2])
    results = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = results  # dataclasses look their module up there
    spec.loader.exec_module(results)
else:
    from yukti import results
t1 = time.perf_counter()
frame = results.load(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "rows": len(frame), "runs": int(frame["run_id"].nunique())}))
"""


def template_frame() -> "pd.DataFrame":
    """One real benchmark frame: jet_dnn on BACKENDS at batch 1 and 64, not stored."""
    import yukti
    from yukti.engine import TimingPolicy

    policy = TimingPolicy(time_budget_s=0.02, min_calls=5, warmup_calls=1, warmup_s=0.0)
    return yukti.benchmark("jet_dnn", list(BACKENDS), batch_sizes=(1, 64), policy=policy, store=False)


def fill_store(folder: Path, n: int, template: "pd.DataFrame", *, seed: int = 0) -> int:
    """Write `n` runs of 1 to 3 rows of `template` into `folder`; returns the rows written."""
    import pandas as pd

    from yukti import results

    rng = random.Random(seed)
    start = pd.Timestamp("2026-01-01T00:00:00Z")
    rows = 0
    for i in range(n):
        k = rng.randint(1, min(3, len(template)))
        run = template.iloc[sorted(rng.sample(range(len(template)), k))].copy()
        run["run_id"] = f"run{i:06d}"
        run["timestamp"] = start + pd.Timedelta(seconds=i)
        run["host"] = HOSTS[i % len(HOSTS)]
        results.write_run(run, results.new_run_path(folder))
        rows += k
    return rows


def load_in_fresh_process(folder: Path, results_module: Path | None = None, cache_dir: Path | None = None) -> dict[str, float]:
    """import_s, load_s, rows and runs of one `load(folder)` in a new interpreter (with
    YUKTI_CACHE_DIR=`cache_dir`, where the store's index is kept, when given)."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH", "")]))}
    if cache_dir is not None:
        env["YUKTI_CACHE_DIR"] = str(cache_dir)
    done = subprocess.run([sys.executable, "-c", _LOAD, str(folder), str(results_module or "")],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"loading {folder} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _stored_runs(folder: Path) -> int:
    return sum(1 for p in folder.glob("*.parquet") if not p.name.endswith(".curves.parquet")) if folder.is_dir() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=N_RUNS, help="runs to write (default %(default)s)")
    parser.add_argument("--store", type=Path, help="write into (and keep) this folder; reused when it holds runs")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="fresh-process loads (default %(default)s)")
    parser.add_argument("--results-module", type=Path, help="load with this results.py instead of yukti.results")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="yukti-store-load-") as scratch:
        folder = args.store or Path(scratch) / "store"
        existing = _stored_runs(folder)
        if existing:
            print(f"store {folder}: {existing} runs already there, not writing")
        else:
            import time

            template = template_frame()
            started = time.perf_counter()
            rows = fill_store(folder, args.n, template)
            print(f"wrote {args.n} runs ({rows} rows) into {folder} in {time.perf_counter() - started:.1f} s")
        cache = Path(scratch) / "cache"  # no index at first
        loads = [load_in_fresh_process(folder, args.results_module, cache) for _ in range(args.repeats)]
        which = args.results_module or "yukti.results"
        for i, one in enumerate(loads, 1):
            kind = "" if args.results_module else (" (no index yet)" if i == 1 else " (index present)")
            print(f"load {i}{kind}: {one['load_s']:.2f} s ({one['rows']} rows, {one['runs']} runs; import {one['import_s']:.2f} s)")
        later = [one["load_s"] for one in loads[1:]]
        print(f"{_stored_runs(folder)} runs with {which}: first load {loads[0]['load_s']:.2f} s"
              + (f", median of the later ones {statistics.median(later):.2f} s" if later else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
