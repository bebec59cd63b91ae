"""kill -9 during `yukti bench`: the store never breaks and no finished backend's rows are lost.

A `yukti bench` subprocess (three quick backends, two batch sizes, its own store and cache) is killed
20 times at random moments spread over its run. `--verbose` logs "measured B (run R)" before B's
rows are written and "stored B (run R, ...)" after, so after each kill: every backend logged as stored
is in the store; at most one backend (the last one measured) was measured but not stored; every stored
backend has all its batch sizes; nothing is stored twice; loading never raises, and leftovers of the
killed writer are recovered or removed.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from yukti import results

BACKENDS = ["reference", "onnxruntime", "torch"]
BATCHES = {1, 8}
KILLS = 20
EVENT = re.compile(r"^yukti: (?P<what>measured|stored) (?P<backend>\S+) \(run (?P<run>[0-9a-f]+)")


def _start(model_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen, list[tuple[float, str]]]:
    """The bench subprocess and a list its stderr lines are appended to (with arrival times) as they come."""
    command = [sys.executable, "-m", "yukti.cli", "bench", str(model_path), "-b", *BACKENDS,
               "--batch", *map(str, sorted(BATCHES)), "--time-budget", "0.05", "--min-calls", "5",
               "--eval-samples", "200", "--quiet", "--verbose"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    started = time.monotonic()

    def read() -> None:
        for line in process.stderr:
            lines.append((time.monotonic() - started, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    process.reader = reader  # type: ignore[attr-defined]
    return process, lines


def _events(lines: list[tuple[float, str]]) -> list[tuple[float, str, str, str]]:
    out = []
    for when, line in lines:
        match = EVENT.match(line)
        if match:
            out.append((when, match["what"], match["backend"], match["run"]))
    return out


@pytest.mark.slow
def test_kill_9_during_bench_never_breaks_the_store_nor_loses_a_finished_backend(tmp_path, jet_dnn):
    model_path = jet_dnn.save(tmp_path / "jet_dnn.onnx")  # a bare ONNX file: no zoo lookup, no training
    store = tmp_path / "store"
    env = {**os.environ, "YUKTI_RESULTS_DIR": str(store), "YUKTI_CACHE_DIR": str(tmp_path / "cache")}
    seed = int(os.environ.get("YUKTI_KILL_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    context = f"(YUKTI_KILL_SEED={seed})"

    # One run to the end: the timeline the kills are spread over, and the complete case.
    process, lines = _start(model_path, env)
    assert process.wait(timeout=120) == 0, "\n".join(line for _, line in lines)
    process.reader.join(timeout=10)
    events = _events(lines)
    assert [(what, backend) for _, what, backend, _ in events] == [
        (what, backend) for backend in BACKENDS for what in ("measured", "stored")], lines
    first_measured, last_stored = events[0][0], events[-1][0]
    stored = results.load(store)
    assert len(stored) == len(BACKENDS) * len(BATCHES)
    known_runs = set(stored["run_id"])

    # Kill moments. Startup time varies with the machine's load, so most kills are timed from the
    # child's own first "measured" line, spread (one per slot, at a random point in it) over the span
    # in which the baseline stored its backends; the first few land during startup, before any store.
    startup_kills = 4
    window = last_stored - first_measured + 0.15
    partial_runs = 0
    for i in range(KILLS):
        process, lines = _start(model_path, env)
        if i < startup_kills:
            delay = first_measured * rng.uniform(0.2, 0.9)
            time.sleep(delay)
        else:
            slot = i - startup_kills
            delay = window * (slot + rng.random()) / (KILLS - startup_kills)
            deadline = time.monotonic() + 120
            while not _events(lines) and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process.reader.join(timeout=10)
        events = _events(lines)
        timing = f"{delay:.2f}s " + ("after start" if i < startup_kills else "after the first backend was measured")
        where = f"kill {i + 1} {timing} {context}; child stderr:\n" + "\n".join(line for _, line in lines)

        results.load(store)  # never raises; a young leftover is left alone
        # The writer is dead: every leftover is stale now. Recover or remove them all.
        contents = results.read_store(store, warn=False, stale_tmp_age_s=0.0)
        assert not contents.skipped, where
        assert not list(store.glob(".*.tmp")), where
        frame = contents.frame
        assert not frame.duplicated(["run_id", "backend", "batch_size"]).any(), where
        for (run_id, backend), rows in frame.groupby(["run_id", "backend"]):
            assert set(rows["batch_size"]) == BATCHES, f"partial backend {backend} in run {run_id}: {where}"
            assert (rows["status"] == "ok").all(), where

        runs = {run for _, _, _, run in events}
        new_runs = set(frame["run_id"]) - known_runs
        assert new_runs <= runs, where  # nothing stored without a "measured" line first
        known_runs |= new_runs
        (run_id,) = runs or {None}
        in_store = [b for b in BACKENDS if run_id is not None and ((frame["run_id"] == run_id) & (frame["backend"] == b)).any()]
        measured = [backend for _, what, backend, _ in events if what == "measured"]
        logged_stored = [backend for _, what, backend, _ in events if what == "stored"]
        assert set(logged_stored) <= set(in_store), where  # said stored: is stored
        assert set(in_store) <= set(measured), where
        lost = [b for b in measured if b not in in_store]
        assert lost in ([], measured[-1:]), f"lost {lost}, more than the backend in flight: {where}"
        assert in_store == BACKENDS[: len(in_store)], where  # stored in order, no gaps
        partial_runs += 0 < len(in_store) < len(BACKENDS)

    # The kills must have hit runs midway (not only before or after), or this test proved little.
    assert partial_runs >= 1, f"no kill landed between two backends' stores {context}"
    assert results.load(store)["run_id"].nunique() == len(known_runs)
