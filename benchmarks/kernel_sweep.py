"""Kernel sweep: one dense layer (ONNX Gemm + bias) per K x N, cpp against onnxruntime.

Every K, N in SIZES (multiples of the vector width and odd ones: 3, 10, 77) at batch 1, 64 and
1024, one thread, measured by `yukti.benchmark` with a short timing policy: the next regression
of the generated dense kernel shows up in the cell where it happens, not averaged into a model.
Run:
    python benchmarks/kernel_sweep.py [--quick] [--out FILE] [--store DIR] [--repeats R] [--time-budget S]

`--quick`: 2 x 2 cells (K, N in QUICK_SIZES) at batch 64, one repeat, a shorter budget.
Writes a tidy table, one row per K x N x batch (TABLE_COLUMNS first: K, N, batch, cpp_us,
ort_us, ratio, gflops; then context), atomically, to FILE (.csv or .parquet) or else to
<results store>/kernel_sweep/<UTC timestamp>.parquet, where the dashboard's Kernels page reads it;
then prints the worst cells (highest ratio).

ratio = cpp p50 / onnxruntime p50 of the user-facing call (below 1: cpp is faster). Each repeat
runs both backends on the cell, alternating which goes first; the ratio is the median of the
repeats' ratios, cpp_us and ort_us the medians of their p50s (compare ratios, not absolute times:
the machine may be shared). gflops is cpp's achieved rate at that median, FLOP per sample x
batch / cpp_us, with FLOP per sample = 2*K*N + N (the multiply-adds and the bias, yukti.roofline's
convention); ort_gflops onnxruntime's. Unlike the engine's `gflops` (samples/s from the mean
latency) it is a median, as the ratio is: one slow call does not move a cell. pct_of_peak is cpp's
share of the host's FP32 FMA peak at one thread.

The asv suite's `KernelSweep` (benchmarks/backends.py) runs the same sweep (`run_sweep`) once per
asv run. asv imports every module of this folder to discover benchmarks: this one imports only the
standard library at import time and defines no function whose name asv would take for a benchmark.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    import pandas as pd

SIZES = (3, 10, 16, 32, 64, 77, 128, 256)
BATCHES = (1, 64, 1024)
QUICK_SIZES = (16, 77)  # one multiple of every vector width, one odd
QUICK_BATCHES = (64,)
BACKENDS = ("cpp", "onnxruntime")
FOLDER = "kernel_sweep"  # under the results store
TABLE_COLUMNS = ["K", "N", "batch", "cpp_us", "ort_us", "ratio", "gflops"]
CONTEXT_COLUMNS = ["ort_gflops", "pct_of_peak", "cpp_native_us", "flop_per_sample", "peak_gflops", "max_abs_diff",
                   "repeats", "status", "error", "sweep_id", "timestamp", "host", "cpu", "git_commit"]
# Short: 64 cells x 3 batches x 2 backends; the medians of a few repeats steady the ratio.
POLICY = dict(time_budget_s=0.05, min_calls=30, warmup_calls=5, warmup_s=0.01)
QUICK_POLICY = dict(time_budget_s=0.02, min_calls=10, warmup_calls=2, warmup_s=0.0)
REPEATS = 3
EVAL_SAMPLES = 256  # fidelity to the reference is checked on these (the batches repeat them)
OPSET = 17


def dense_layer(k: int, n: int, seed: int | None = None) -> "onnx.ModelProto":
    """y = x W^T + b with x [batch, k], W [n, k] (transB, as torch exports nn.Linear), b [n];
    weights drawn from a seed of (k, n), so every sweep measures the same layers."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed if seed is not None else 1000 * k + n)
    weight = (rng.standard_normal((n, k)) / math.sqrt(k)).astype(np.float32)
    bias = (0.1 * rng.standard_normal(n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "weight", "bias"], ["y"], transB=1)], f"dense_k{k}_n{n}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="yukti-kernel-sweep")
    model.ir_version = 8  # readable by every onnxruntime the project pins
    onnx.checker.check_model(model)
    return model


def dense_flop_per_sample(k: int, n: int) -> int:
    """2 FLOP per multiply-add (K x N of them) and 1 per bias add: yukti.roofline's count of the layer."""
    return 2 * k * n + n


def unavailable_backends() -> dict[str, str]:
    """{backend: why it cannot run here} for the two backends the sweep compares."""
    from yukti import registry

    missing = {}
    for name in BACKENDS:
        try:
            info = registry.backend_info(name)
        except Exception as exc:  # noqa: BLE001 - an unregistered or broken plugin is "unavailable" here
            missing[name] = f"{type(exc).__name__}: {exc}"
            continue
        if not info.available:
            missing[name] = str(info.reason)
    return missing


def _host_peak() -> float | None:
    try:
        from yukti import roofline
    except ImportError:  # a yukti before the roofline numbers (asv measures older commits too)
        return None
    return roofline.host_peak_gflops(1).gflops


def _median(values: Iterable[float]) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def _number(row: "pd.Series | None", column: str) -> float:
    if row is None or column not in row.index:
        return math.nan
    value = row[column]
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def measure_cell(k: int, n: int, batches: Sequence[int], *, policy: dict[str, Any], repeats: int = 1,
                 threads: int = 1) -> list[dict[str, Any]]:
    """The sweep's rows of one K x N layer, one per batch (see the module docstring)."""
    import yukti

    model = yukti.load(dense_layer(k, n), name=f"dense_k{k}_n{n}")
    timing = yukti.TimingPolicy(**policy)
    flop = dense_flop_per_sample(k, n)
    runs: list[Any] = []
    for repeat in range(max(int(repeats), 1)):
        order = list(BACKENDS) if repeat % 2 == 0 else list(reversed(BACKENDS))  # neither always goes first
        runs.append(yukti.benchmark(model, backends=order, batch_sizes=list(batches), threads=threads, policy=timing,
                                    store=False, max_eval_samples=EVAL_SAMPLES, task="regression"))
    rows = []
    for batch in batches:
        per_repeat = []
        problems = []
        for frame in runs:
            at = frame[frame["batch_size"] == batch].set_index("backend")
            found = {b: at.loc[b] if b in at.index else None for b in BACKENDS}
            for backend, row in found.items():
                if row is None or row["status"] != "ok":
                    first_line = "" if row is None else next(iter(str(row.get("error") or "").splitlines()), "")
                    problems.append(f"{backend}: " + ("no row" if row is None else f"{row['status']}: {first_line}"))
            per_repeat.append(found)
        cpp_us = _median(_number(r["cpp"], "latency_p50_us") for r in per_repeat)
        ort_us = _median(_number(r["onnxruntime"], "latency_p50_us") for r in per_repeat)
        ratios = [_number(r["cpp"], "latency_p50_us") / _number(r["onnxruntime"], "latency_p50_us") for r in per_repeat]
        first = next((r["cpp"] for r in per_repeat if r["cpp"] is not None), None)
        rows.append({
            "K": k, "N": n, "batch": int(batch), "cpp_us": cpp_us, "ort_us": ort_us, "ratio": _median(ratios),
            # FLOP per µs / 1e3 = GFLOP/s
            "gflops": flop * batch / cpp_us / 1e3, "ort_gflops": flop * batch / ort_us / 1e3,
            "cpp_native_us": _median(_number(r["cpp"], "latency_native_p50_us") for r in per_repeat),
            "flop_per_sample": flop,
            "max_abs_diff": max((_number(r["cpp"], "max_abs_diff") for r in per_repeat), default=math.nan),
            "repeats": len(per_repeat), "status": "ok" if not problems else "error",
            "error": "; ".join(dict.fromkeys(problems)) or None,
            "host": None if first is None else first.get("host"), "cpu": None if first is None else first.get("cpu"),
            "git_commit": None if first is None else first.get("git_commit"),
        })
    return rows


def run_sweep(ks: Sequence[int] = SIZES, ns: Sequence[int] = SIZES, batches: Sequence[int] = BATCHES, *,
              policy: dict[str, Any] | None = None, repeats: int = REPEATS, threads: int = 1,
              on_cell: Callable[[int, int, int, int], None] | None = None) -> "pd.DataFrame":
    """The sweep's table (TABLE_COLUMNS, then CONTEXT_COLUMNS), one row per K x N x batch, in that
    order. `on_cell(done, total, k, n)` is called before each layer is measured."""
    import pandas as pd

    policy = dict(POLICY if policy is None else policy)
    peak = _host_peak()
    sweep_id = uuid.uuid4().hex[:12]
    stamp = pd.Timestamp.now(tz="UTC")
    cells = [(k, n) for k in ks for n in ns]
    rows = []
    for done, (k, n) in enumerate(cells):
        if on_cell is not None:
            on_cell(done, len(cells), k, n)
        rows += measure_cell(int(k), int(n), [int(b) for b in batches], policy=policy, repeats=repeats, threads=threads)
    frame = pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS + CONTEXT_COLUMNS])
    frame["peak_gflops"] = peak
    frame["pct_of_peak"] = 100.0 * frame["gflops"] / peak if peak else math.nan
    frame["sweep_id"] = sweep_id
    frame["timestamp"] = stamp
    return frame[TABLE_COLUMNS + CONTEXT_COLUMNS]


def sweep_folder(store: str | Path | None = None) -> Path:
    """Where sweeps are kept: the `kernel_sweep` folder of the results store (`yukti.results`)."""
    from yukti import results

    return (Path(store) if store is not None else results.default_store()) / FOLDER


def new_sweep_path(store: str | Path | None = None) -> Path:
    """A fresh file name in `sweep_folder` (names sort in the order sweeps were written)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return sweep_folder(store) / f"{stamp}-{time.time_ns():020d}.parquet"


def write_sweep(frame: "pd.DataFrame", path: Path) -> Path:
    """The table written atomically (temp file + rename): CSV for a .csv path, Parquet otherwise."""
    import io

    from yukti.cache import atomic_write_bytes

    if path.suffix.lower() == ".csv":
        data = frame.to_csv(index=False).encode()
    else:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        data = buffer.getvalue()
    return atomic_write_bytes(Path(path), data)


def worst_cells(frame: "pd.DataFrame", n: int = 5) -> "pd.DataFrame":
    """The `n` cells with the highest ratio (cpp slowest against onnxruntime), worst first."""
    return frame.dropna(subset=["ratio"]).sort_values("ratio", ascending=False, kind="stable").head(n)


def describe_worst(frame: "pd.DataFrame", n: int = 5) -> str:
    """The worst cells as a small text table, with how many cells cpp loses."""
    worst = worst_cells(frame, n)
    measured = frame["ratio"].notna().sum()
    lines = [f"cpp slower than onnxruntime (ratio > 1) in {int((frame['ratio'] > 1).sum())} of {measured} cells; "
             f"worst {len(worst)}:",
             f"{'K':>5} {'N':>5} {'batch':>6} {'cpp µs':>10} {'ort µs':>10} {'ratio':>7} {'GFLOP/s':>9}"]
    for row in worst.itertuples():
        lines.append(f"{row.K:>5} {row.N:>5} {row.batch:>6} {row.cpp_us:>10.3f} {row.ort_us:>10.3f} {row.ratio:>7.2f} "
                     f"{row.gflops:>9.3g}")
    failed = frame[frame["status"] != "ok"]
    for row in failed.itertuples():
        lines.append(f"not measured: K={row.K} N={row.N} batch={row.batch}: {row.error}")
    return "\n".join(lines)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"K, N in {QUICK_SIZES} at batch {QUICK_BATCHES}, one repeat")
    parser.add_argument("--out", type=Path, help="write the table here (.csv or .parquet) instead of the results store")
    parser.add_argument("--store", type=Path, help="results store (default: yukti's, $YUKTI_RESULTS_DIR)")
    parser.add_argument("--sizes", type=_sizes, help=f"K and N values, comma-separated (default {','.join(map(str, SIZES))})")
    parser.add_argument("--batches", type=_sizes, help=f"batch sizes, comma-separated (default {','.join(map(str, BATCHES))})")
    parser.add_argument("--repeats", type=int, help=f"runs per cell, alternating which backend goes first (default {REPEATS})")
    parser.add_argument("--time-budget", type=float, help=f"seconds per backend x batch (default {POLICY['time_budget_s']})")
    parser.add_argument("--worst", type=int, default=5, help="worst cells printed (default 5)")
    args = parser.parse_args(argv)

    missing = unavailable_backends()
    if missing:
        print("the kernel sweep needs " + " and ".join(BACKENDS) + ": "
              + "; ".join(f"{b}: {why}" for b, why in missing.items()), file=sys.stderr)
        return 2
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    batches = args.batches or (QUICK_BATCHES if args.quick else BATCHES)
    policy = dict(QUICK_POLICY if args.quick else POLICY)
    if args.time_budget is not None:
        policy["time_budget_s"] = args.time_budget
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else REPEATS)

    def progress(done: int, total: int, k: int, n: int) -> None:
        print(f"[{done + 1}/{total}] K={k} N={n}", file=sys.stderr, flush=True)

    frame = run_sweep(sizes, sizes, batches, policy=policy, repeats=repeats, on_cell=progress)
    path = write_sweep(frame, args.out if args.out is not None else new_sweep_path(args.store))
    print(describe_worst(frame, args.worst))
    print(f"wrote {len(frame)} cells to {path}")
    return 0 if (frame["status"] == "ok").all() else 1


if __name__ == "__main__":
    sys.exit(main())
