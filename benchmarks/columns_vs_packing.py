"""Column (SoA) input against packing columns into rows first, on the cpp backend.

Event data often sits in columns (one array per feature). `run.columns(cols)` reads one pointer
per column; the alternative packs them with np.column_stack and calls `run(x)`. Run:
    python benchmarks/columns_vs_packing.py [BATCH ...]
Prints per-call medians and the ratio (measured in one run: compare ratios, not absolute times).
"""

from __future__ import annotations

import sys
import time

import numpy as np

import yukti


def median_us(function, repeat: int) -> float:
    for _ in range(max(10, repeat // 10)):
        function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        function()
        times.append(time.perf_counter_ns() - start)
    return float(np.median(times)) / 1e3


def main(batches: list[int]) -> None:
    model = yukti.zoo.get("jet_dnn")
    run = yukti.runner("cpp", model)
    data = np.concatenate([model.data.X] * (max(batches) // len(model.data.X) + 1))
    print(f"{'batch':>7} {'pack+call µs':>14} {'columns µs':>12} {'columns/pack':>13}")
    for batch in batches:
        columns = [np.ascontiguousarray(data[:batch, i]) for i in range(data.shape[1])]
        np.testing.assert_array_equal(run.columns(columns), run(np.column_stack(columns)))
        repeat = 20000 if batch < 100 else 2000 if batch < 10000 else 100
        packed = median_us(lambda: run(np.column_stack(columns)), repeat)
        direct = median_us(lambda: run.columns(columns), repeat)
        print(f"{batch:>7} {packed:>14.2f} {direct:>12.2f} {direct / packed:>13.2f}")


if __name__ == "__main__":
    main([int(b) for b in sys.argv[1:]] or [1, 64, 1024, 65536])
