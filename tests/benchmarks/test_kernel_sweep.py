"""benchmarks/kernel_sweep.py: the dense layers it builds, its FLOP count, its table and files,
and one real --quick sweep (2 x 2 cells at one batch) into a temporary results store."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "kernel_sweep.py"


def _sweep() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kernel_sweep_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_the_script_defines_nothing_asv_would_take_for_a_benchmark() -> None:
    # asv imports every module of benchmarks/ and runs what is named like a benchmark
    module = _sweep()
    prefixes = ("time_", "track_", "mem_", "peakmem_", "timeraw_")
    assert not [name for name in vars(module) if name.startswith(prefixes)]
    assert module.SIZES == (3, 10, 16, 32, 64, 77, 128, 256) and module.BATCHES == (1, 64, 1024)


@pytest.mark.parametrize(("k", "n"), [(16, 64), (77, 3), (3, 256)])
def test_dense_layer_is_gemm_plus_bias_with_the_roofline_count(k: int, n: int) -> None:
    from onnx.reference import ReferenceEvaluator

    from yukti import roofline

    module = _sweep()
    model = module.dense_layer(k, n)
    assert [node.op_type for node in model.graph.node] == ["Gemm"]
    weights = {t.name: t for t in model.graph.initializer}
    assert list(weights["weight"].dims) == [n, k] and list(weights["bias"].dims) == [n]
    assert module.dense_flop_per_sample(k, n) == roofline.flop_per_sample(model) == 2 * k * n + n
    x = np.random.default_rng(0).standard_normal((3, k)).astype(np.float32)
    from onnx import numpy_helper

    expected = x @ numpy_helper.to_array(weights["weight"]).T + numpy_helper.to_array(weights["bias"])
    np.testing.assert_allclose(ReferenceEvaluator(model).run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-5)
    assert module.dense_layer(k, n).SerializeToString() == model.SerializeToString()  # the same layer every sweep


def test_worst_cells_and_files(tmp_path: Path) -> None:
    module = _sweep()
    frame = pd.DataFrame({"K": [3, 16, 77], "N": [3, 16, 77], "batch": [1, 1, 1], "cpp_us": [1.0, 2.0, 9.0],
                          "ort_us": [2.0, 1.0, 3.0], "ratio": [0.5, 2.0, 3.0], "gflops": [0.1, 0.2, 0.3],
                          "status": ["ok"] * 3, "error": [None] * 3})
    assert module.worst_cells(frame, 2)[["K", "ratio"]].values.tolist() == [[77, 3.0], [16, 2.0]]
    text = module.describe_worst(frame, 2)
    assert "in 2 of 3 cells" in text and text.splitlines()[2].split()[:3] == ["77", "77", "1"]
    store = tmp_path / "store"
    path = module.write_sweep(frame, module.new_sweep_path(store))
    assert path.parent == store / "kernel_sweep" and path.suffix == ".parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)
    csv = module.write_sweep(frame, tmp_path / "sweep.csv")
    assert pd.read_csv(csv)["ratio"].tolist() == [0.5, 2.0, 3.0]
    assert not list((store / "kernel_sweep").glob(".*.tmp"))  # written through a temp file and a rename


@pytest.mark.slow
def test_quick_sweep_writes_four_cells_into_the_store(tmp_path: Path) -> None:
    module = _sweep()
    if module.unavailable_backends():
        pytest.skip(f"the sweep needs cpp and onnxruntime: {module.unavailable_backends()}")
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--store", str(store)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    [path] = (store / "kernel_sweep").glob("*.parquet")
    frame = pd.read_parquet(path)
    assert list(frame.columns[:7]) == ["K", "N", "batch", "cpp_us", "ort_us", "ratio", "gflops"]
    assert sorted(zip(frame["K"], frame["N"], frame["batch"])) == [(k, n, 64) for k in (16, 77) for n in (16, 77)]
    assert (frame["status"] == "ok").all(), frame["error"].tolist()
    assert (frame[["cpp_us", "ort_us", "ratio", "gflops"]] > 0).all().all()
    np.testing.assert_allclose(frame["ratio"], frame["cpp_us"] / frame["ort_us"])  # one repeat: the ratio of the medians
    assert (frame["max_abs_diff"] <= 1e-4).all()  # cpp agrees with the reference on every layer
    assert frame["flop_per_sample"].tolist() == [2 * k * n + n for k, n in zip(frame["K"], frame["N"])]
    np.testing.assert_allclose(frame["gflops"], frame["flop_per_sample"] * frame["batch"] / frame["cpp_us"] / 1e3)
    assert frame["sweep_id"].nunique() == 1
    worst = frame.loc[frame["ratio"].idxmax()]
    assert f"{worst['K']:>5} {worst['N']:>5} {worst['batch']:>6}" in done.stdout  # the worst cell is printed
    assert f"wrote 4 cells to {path}" in done.stdout
    # the results store still reads as before: the sweep's folder is not a run
    from yukti import results

    assert results.read_store(store).frame.empty
