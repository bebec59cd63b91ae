"""cpp `threads`: a batch split over the generated library's worker pool computes exactly what one
thread computes, at every batch size around the tile boundaries; the pool starts once per library
(no thread per call); concurrent callers and a forked child stay correct; ThreadSanitizer finds no
race in the pool."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti

pytestmark = pytest.mark.skipif(not yukti.registry.backend_info("cpp").available, reason="no C++ compiler")
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc/self/task (Linux)")


def _take(model: yukti.Model, n: int) -> np.ndarray | list[np.ndarray]:
    """The first n samples of the model's data (repeated when it holds fewer): one array, or one per input."""
    arrays = model.data.inputs or [model.data.X]
    taken = [np.ascontiguousarray(np.resize(a, (n, *a.shape[1:])), dtype=np.float32) for a in arrays]
    return taken if len(taken) > 1 else taken[0]


def _as_list(outputs: np.ndarray | tuple[np.ndarray, ...]) -> list[np.ndarray]:
    return list(outputs) if isinstance(outputs, tuple) else [outputs]


def _tasks() -> int:
    return len(os.listdir("/proc/self/task"))


def _dense(seed: int) -> yukti.Model:
    """A small dense net (8 -> 48 -> 4) with weights of its own: a library no other test loaded."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
             for name, shape in (("w1", (8, 48)), ("b1", (48,)), ("w2", (48, 4)), ("b2", (4,)))]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"])]
    graph = helper.make_graph(nodes, f"dense_{seed}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    return yukti.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))


@pytest.mark.parametrize("name", ["jet_dnn", "mdt_conv1d", "jet_fusion"])
def test_threads_compute_exactly_what_one_thread_computes(name, zoo_models):
    model = zoo_models[name]
    one = yukti.runner("cpp", model)
    runners = {t: yukti.runner("cpp", model, threads=t) for t in (2, 3, 8)}
    # the thread count is passed per call: one compiled library serves every count
    assert {r.info["artifact_path"] for r in runners.values()} == {one.info["artifact_path"]}
    assert one.info["threads"] == 1 and runners[3].info["threads"] == 3 and runners[3].info["thread_safe"]
    tile = one.info["tile"]
    # 0..3 tiles and the edges between them: a batch under two tiles runs on the caller alone
    for batch in sorted({1, max(tile - 1, 1), tile, tile + 1, 2 * tile - 1, 2 * tile, 2 * tile + 1, 3 * tile, 3 * tile + 5}):
        x = _take(model, batch)
        expected = _as_list(one(x))
        for threads, runner in runners.items():
            for got, want in zip(_as_list(runner(x)), expected):
                np.testing.assert_array_equal(got, want, err_msg=f"{name}: batch {batch}, threads {threads}")
    x = _take(model, 3 * tile + 5)
    reference = _as_list(yukti.runner("onnxruntime", model)(x))
    for got, want in zip(_as_list(runners[2](x)), reference):
        np.testing.assert_allclose(got, want, atol=1e-5 if name != "mdt_conv1d" else 1e-4)


def test_column_input_and_the_ctypes_path_take_threads(jet_dnn):
    one = yukti.runner("cpp", jet_dnn)
    x = _take(jet_dnn, 3 * one.info["tile"] + 7)
    expected = one(x)
    columns = [np.ascontiguousarray(x[:, f]) for f in range(x.shape[1])]
    np.testing.assert_array_equal(yukti.runner("cpp", jet_dnn, threads=2).columns(columns), expected)
    plain = yukti.runner("cpp", jet_dnn, threads=2, use_bridge=False)
    assert plain.info["call_path"].startswith("ctypes")
    np.testing.assert_array_equal(plain(x), expected)
    np.testing.assert_array_equal(plain.columns(columns), expected)


def test_native_timing_runs_with_the_runner_threads(jet_dnn):
    runner = yukti.runner("cpp", jet_dnn, threads=2)
    ns = runner.time_native([_take(jet_dnn, 4 * runner.info["tile"])], 20)
    assert len(ns) >= 1 and np.all(ns > 0)


def test_entry_points_take_batch_0_refuse_a_negative_one_and_clamp_threads(jet_dnn):
    runner = yukti.runner("cpp", jet_dnn, threads=2)
    library = ctypes.CDLL(str(Path(runner.info["artifact_path"]) / "model.so"))
    x = _take(jet_dnn, 300)
    expected = runner(x)
    pointers = ctypes.POINTER(ctypes.c_void_p)
    for symbol in ("infer_threads", "infer_checked_threads"):
        function = getattr(library, symbol)
        function.argtypes, function.restype = [pointers, pointers, ctypes.c_int64, ctypes.c_int64], ctypes.c_int64
        out = np.full_like(expected, np.nan)
        ins, outs = (ctypes.c_void_p * 1)(x.ctypes.data), (ctypes.c_void_p * 1)(out.ctypes.data)
        assert function(ins, outs, 0, 2) == 0 and np.isnan(out).all()  # nothing to compute, nothing written
        assert function(ins, outs, -1, 2) == -1
        for threads in (0, -3, 1 << 40):  # below 1: the caller alone; beyond the tiles or kMaxThreads: clamped
            out[:] = np.nan
            assert function(ins, outs, len(x), threads) == 0
            np.testing.assert_array_equal(out, expected)


def _checked(library: ctypes.CDLL, symbol: str, arrays: list[np.ndarray], out: np.ndarray, threads: int) -> int:
    function = getattr(library, symbol)
    pointers = ctypes.POINTER(ctypes.c_void_p)
    function.argtypes, function.restype = [pointers, pointers, ctypes.c_int64, ctypes.c_int64], ctypes.c_int64
    ins = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
    return function(ins, (ctypes.c_void_p * 1)(out.ctypes.data), len(arrays[0]), threads)


def test_the_checked_calls_find_the_first_non_finite_value_whichever_thread_checks_it(zoo_models):
    """Each tile is checked just before it is computed, by whichever thread takes it: the answer is
    still the first NaN/inf of the first input (feature) holding one."""
    fusion, jet = zoo_models["jet_fusion"], zoo_models["jet_dnn"]
    runner = yukti.runner("cpp", fusion, threads=2)
    library = ctypes.CDLL(str(Path(runner.info["artifact_path"]) / "model.so"))
    tile = runner.info["tile"]
    arrays = [a.copy() for a in _take(fusion, 4 * tile + 3)]
    out = np.empty((len(arrays[0]), 5), np.float32)
    arrays[1][0, 0, 1] = np.nan  # input 1 holds one, early; input 0 two, in the last tiles
    arrays[0][3 * tile + 1, 2] = np.inf
    arrays[0][4 * tile, 0] = np.nan
    for threads in (1, 2, 4):
        assert _checked(library, "infer_checked_threads", arrays, out, threads) == 1 + (3 * tile + 1) * 6 + 2
    arrays[0] = _take(fusion, 4 * tile + 3)[0]
    for threads in (1, 2):
        assert _checked(library, "infer_checked_threads", arrays, out, threads) == 1 + 1

    runner = yukti.runner("cpp", jet, threads=2)
    library = ctypes.CDLL(str(Path(runner.info["artifact_path"]) / "model.so"))
    x = _take(jet, 5 * tile + 1)
    columns = [np.ascontiguousarray(x[:, f]) for f in range(16)]
    columns[9][4 * tile] = np.nan  # feature 9, late; feature 4 twice, the first in tile 2
    columns[4][2 * tile + 5] = -np.inf
    columns[4][5 * tile] = np.nan
    out = np.empty((len(x), 5), np.float32)
    for threads in (1, 2, 3):
        assert _checked(library, "infer_columns_checked_threads", columns, out, threads) == 1 + 4 * len(x) + 2 * tile + 5
    with pytest.raises(yukti.InputError, match="non-finite|NaN|nan"):
        runner.columns(columns)


@needs_proc
def test_the_pool_starts_once_per_library_and_no_call_starts_a_thread():
    model = _dense(seed=1401)
    before = _tasks()
    runner = yukti.runner("cpp", model, threads=3)
    assert _tasks() == before + 2  # prepare started the caller's two helpers
    tile = runner.info["tile"]
    for batch in (1, tile, 2 * tile, 5 * tile + 3) * 50:
        runner(np.ones((batch, 8), np.float32))
    assert _tasks() == before + 2
    # another runner of the same library shares its pool: asking for fewer threads starts none
    fewer = yukti.runner("cpp", model, threads=2)
    np.testing.assert_array_equal(fewer(np.ones((5 * tile, 8), np.float32)), runner(np.ones((5 * tile, 8), np.float32)))
    assert _tasks() == before + 2
    # one thread (the default) never starts a pool
    before = _tasks()
    single = yukti.runner("cpp", _dense(seed=1402))
    for _ in range(20):
        single(np.ones((8 * tile, 8), np.float32))
    assert _tasks() == before


def test_concurrent_callers_of_a_threaded_runner_get_their_own_results(jet_dnn):
    """One batch holds the pool at a time; the others compute on their own threads meanwhile."""
    runner = yukti.runner("cpp", jet_dnn, threads=2)
    tile = runner.info["tile"]
    batches = [_take(jet_dnn, n) for n in (tile + 1, 3 * tile, 6 * tile + 5)]
    expected = [yukti.runner("cpp", jet_dnn)(x) for x in batches]
    failures: list[str] = []

    def work(worker: int) -> None:
        for i in range(30):
            k = (worker + i) % len(batches)
            if not np.array_equal(runner(batches[k]), expected[k]):
                failures.append(f"caller {worker}, call {i}: batch {len(batches[k])} differs")

    callers = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert not failures


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_computes_alone(jet_dnn):
    """The child of a fork has none of its parent's workers: its threaded calls must not wait for them."""
    runner = yukti.runner("cpp", jet_dnn, threads=2)
    x = _take(jet_dnn, 4 * runner.info["tile"])
    expected = runner(x)  # the parent's pool is running
    pid = os.fork()
    if pid == 0:  # the child: a hang (waiting for workers it does not have) ends at the alarm
        code = 1
        try:
            signal.alarm(60)
            code = 0 if np.array_equal(runner(x), expected) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


TSAN_DRIVER = """
#include <cstdio>
#include <thread>
#include <vector>
#include "jet_dnn.hpp"
namespace net = yukti_jet_dnn;

// Callers at once, each with its own thread count (1..4) and batch, against serial results.
int main() {
  const int64_t sizes[] = {1, net::kTile + 1, 2 * net::kTile, 7 * net::kTile + 3};
  const int64_t largest = sizes[3];
  std::vector<float> x(largest * net::kInputSizes[0]);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7919) % 1000) / 500.0f - 1.0f;
  const float* in[] = {x.data()};
  std::vector<std::vector<float>> expected;
  for (int64_t batch : sizes) {
    expected.emplace_back(batch * net::kOutputSizes[0]);
    float* out[] = {expected.back().data()};
    if (net::infer(in, out, batch) != 0) return 10;
  }
  std::vector<int> bad(4, 0);
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&, c] {
      std::vector<float> got(largest * net::kOutputSizes[0]);
      float* out[] = {got.data()};
      for (int r = 0; r < 40; ++r) {
        const int k = (r + c) % 4;
        if (net::infer_checked(in, out, sizes[k], 1 + (r * 3 + c) % 4) != 0) ++bad[c];
        for (size_t i = 0; i < expected[k].size(); ++i)
          if (got[i] != expected[k][i]) { ++bad[c]; break; }
      }
    });
  }
  for (auto& caller : callers) caller.join();
  int failures = 0;
  for (int b : bad) failures += b;
  std::printf("failures %d\\n", failures);
  return failures == 0 ? 0 : 1;
}
"""


@pytest.mark.slow
def test_the_pool_is_clean_under_thread_sanitizer(jet_dnn, tmp_path):
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
    probe = tmp_path / "probe.cpp"
    probe.write_text("#include <thread>\nint main() { int x = 0; std::thread t([&] { x = 1; }); t.join(); return x - 1; }\n")
    built = subprocess.run([cxx, "-std=c++17", "-fsanitize=thread", str(probe), "-o", str(tmp_path / "probe")], capture_output=True)
    if built.returncode != 0 or subprocess.run([str(tmp_path / "probe")], capture_output=True).returncode != 0:
        pytest.skip("ThreadSanitizer does not build or run here")
    yukti.runner_class("cpp").export(jet_dnn, tmp_path / "src")
    (tmp_path / "src" / "driver.cpp").write_text(TSAN_DRIVER)
    command = [cxx, "-std=c++17", "-O1", "-g", "-fsanitize=thread", "driver.cpp", "jet_dnn.cpp", "-o", "driver"]
    built = subprocess.run(command, cwd=tmp_path / "src", capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-4000:]
    done = subprocess.run([str(tmp_path / "src" / "driver")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TSAN_OPTIONS": "halt_on_error=1"})
    assert done.returncode == 0 and "ThreadSanitizer" not in done.stderr, done.stdout + done.stderr[-4000:]
    assert "failures 0" in done.stdout
