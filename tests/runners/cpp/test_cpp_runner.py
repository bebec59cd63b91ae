"""The cpp backend beyond the shared contract: compile errors, the cache, preflight, column input,
native timing, the call paths."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti
from zoo_variants import onnx_only

pytestmark = pytest.mark.skipif(not yukti.registry.backend_info("cpp").available, reason="no C++ compiler")


def _cache_entries() -> set[str]:
    root = yukti.ArtifactCache().root / "artifacts"
    return {str(p) for p in root.glob("*/*")} if root.is_dir() else set()


def test_compile_error_carries_the_compiler_message_and_leaves_no_entry(jet_dnn, tmp_path, monkeypatch):
    from yukti.runners.cpp.compiler import CompileError

    # a cache of its own: pytest-xdist workers share the suite's, where another test may be building
    monkeypatch.setenv("YUKTI_CACHE_DIR", str(tmp_path / "cache"))
    before = _cache_entries()
    with pytest.raises(CompileError, match="no-such-flag"):
        yukti.runner("cpp", jet_dnn, extra_flags=("-fno-such-flag",))
    assert _cache_entries() == before
    assert not any((yukti.ArtifactCache().root / "tmp").iterdir())


def test_missing_compiler_is_a_reason_not_a_crash(monkeypatch, jet_dnn):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    info = yukti.registry.backend_info("cpp")
    assert not info.available and "compiler" in info.reason
    with pytest.raises(yukti.BackendUnavailableError, match="no C\\+\\+ compiler"):
        yukti.runner("cpp", jet_dnn)


def _graph(nodes, inputs, outputs, inits=()):
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)), opset_imports=[helper.make_opsetid("", 18)])
    return yukti.load(model)


def test_preflight_names_unsupported_ops_without_compiling():
    model = _graph(
        [helper.make_node("Relu", ["x"], ["r"], name="act"), helper.make_node("Softplus", ["r"], ["e"], name="softplus_1"),
         helper.make_node("HardSwish", ["e"], ["y"], name="hs_2")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    before = _cache_entries()
    support = yukti.runner_class("cpp").supports(model)
    assert not support
    assert ("Softplus", "softplus_1") in support.unsupported and ("HardSwish", "hs_2") in support.unsupported
    assert _cache_entries() == before
    with pytest.raises(yukti.UnsupportedModelError, match="Softplus.*softplus_1"):
        yukti.runner("cpp", model)


def test_dynamic_non_batch_dimension_is_refused():
    model = _graph([helper.make_node("Relu", ["x"], ["y"], name="act")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "F"])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "F"])])
    support = yukti.runner_class("cpp").supports(model)
    assert not support and "dynamic dimension on axis 1" in support.reason


def test_batch_moving_transpose_is_refused():
    model = _graph([helper.make_node("Transpose", ["x"], ["y"], name="swap", perm=[1, 0])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, "N"])])
    assert not yukti.runner_class("cpp").supports(model)


def test_broadcasting_arithmetic_and_activations_match_onnxruntime():
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((1, 3, 1)).astype(np.float32), "c1"),
             numpy_helper.from_array(rng.standard_normal((4,)).astype(np.float32), "c2"),
             numpy_helper.from_array(np.array(-0.5, np.float32), "lo"), numpy_helper.from_array(np.array(0.7, np.float32), "hi")]
    nodes = [helper.make_node("Mul", ["x", "c1"], ["a"], name="mul"), helper.make_node("Sub", ["a", "c2"], ["b"], name="sub"),
             helper.make_node("Div", ["b", "x"], ["c"], name="div"), helper.make_node("Elu", ["c"], ["d"], name="elu", alpha=0.3),
             helper.make_node("LeakyRelu", ["d"], ["e"], name="lrelu", alpha=0.2), helper.make_node("Tanh", ["e"], ["f"], name="tanh"),
             helper.make_node("Add", ["f", "a"], ["g"], name="add"), helper.make_node("Clip", ["g", "lo", "hi"], ["h"], name="clip"),
             helper.make_node("Sigmoid", ["h"], ["y"], name="sig")]
    model = _graph(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4])], inits)
    x = rng.uniform(0.5, 2.0, (70, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(yukti.runner("cpp", model)(x), yukti.runner("onnxruntime", model)(x), atol=1e-6)


def test_cache_is_reused_across_processes(jet_dnn):
    first = yukti.runner("cpp", jet_dnn)
    code = ("import yukti, sys; m = yukti.load(sys.argv[1]); r = yukti.runner('cpp', m); "
            "print(r.info['cache_hit'], r.info['artifact_path'], repr(r.info.build_s))")
    path = jet_dnn.save(yukti.ArtifactCache().root / "jet.onnx")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=os.environ, check=True)
    hit, artifact, build_s = out.stdout.split()
    assert hit == "True" and artifact == first.info["artifact_path"]
    # build_s is the compiler's time, whoever paid it: the builder's seconds on a hit, never 0
    assert float(build_s) == first.info.build_s > 0


def test_info_records_flags_and_sizes(jet_dnn):
    info = yukti.runner("cpp", jet_dnn).info
    assert "-O3" in info["flags"] and "-march=native" in info["flags"] and "-ffast-math" not in info["flags"]
    assert info["artifact_bytes"] > 0 and info["tile"] >= 1 and info["call_path"] == "bridge"
    fast = yukti.runner("cpp", jet_dnn, fast_math=True)
    assert "-ffast-math" in fast.info["flags"]
    x = jet_dnn.data.X[:200]
    np.testing.assert_allclose(fast(x), yukti.runner("reference", jet_dnn)(x), atol=1e-5)


def test_ctypes_call_path_agrees_with_the_bridge(jet_dnn):
    plain = yukti.runner("cpp", jet_dnn, use_bridge=False)
    assert plain.info["call_path"].startswith("ctypes")
    x = jet_dnn.data.X[:300]
    np.testing.assert_array_equal(plain(x), yukti.runner("cpp", jet_dnn)(x))
    bad = x.copy()
    bad[7, 2] = np.inf
    with pytest.raises(yukti.InputError, match=r"index \(7, 2\)"):
        plain(bad)


def test_check_finite_false_lets_nan_through(jet_dnn):
    x = jet_dnn.data.X[:4].copy()
    x[1, 0] = np.nan
    out = yukti.runner("cpp", jet_dnn, check_finite=False)(x)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2, 3]]).all()


def test_native_timing_groups_short_calls(jet_dnn):
    runner = yukti.runner("cpp", jet_dnn)
    short = runner.time_native([jet_dnn.data.X[:1]], 2000, min_group_ns=2000)
    assert 1 <= short.size < 2000, "batch-1 calls (well under 2 us) are timed in groups"
    assert (short > 0).all() and np.isfinite(short).all()
    ungrouped = runner.time_native([jet_dnn.data.X[:1]], 300, min_group_ns=0)
    assert ungrouped.shape == (300,), "min_group_ns=0 times every call alone"
    # Grouping removes clock overhead, it does not hide work: 64x the batch costs clearly more.
    big = runner.time_native([jet_dnn.data.X[:64]], 200, min_group_ns=2000)
    assert np.median(big) > 4 * np.median(short)


@pytest.fixture(scope="module")
def run(jet_dnn):
    return yukti.runner("cpp", jet_dnn)


@pytest.fixture(scope="module")
def x(jet_dnn):
    return jet_dnn.data.X[:150]


class TestColumns:

    def test_every_column_container_matches_rows(self, run, x):
        expected = run(x)
        names = [f"f{i}" for i in range(16)]
        as_dict = {n: np.ascontiguousarray(x[:, i]) for i, n in enumerate(names)}
        records = np.rec.fromarrays([x[:, i] for i in range(16)], names=names)
        for columns in (as_dict, [x[:, i] for i in range(16)], records, pd.DataFrame(as_dict)):
            np.testing.assert_array_equal(run.columns(columns), expected)

    def test_wrong_column_count_and_length(self, run, x):
        with pytest.raises(yukti.InputError, match="takes 16 columns; got 15"):
            run.columns([x[:, i] for i in range(15)])
        cols = [x[:, i] for i in range(16)]
        cols[3] = cols[3][:-1]
        with pytest.raises(yukti.InputError, match="column 3"):
            run.columns(cols)

    def test_nan_and_lossy_dtype_in_a_column(self, run, x):
        cols = [np.array(x[:, i]) for i in range(16)]
        cols[5][9] = np.nan
        with pytest.raises(yukti.InputError, match="column 5 .* row 9"):
            run.columns(cols)
        cols[5] = x[:, 5].astype(np.float64) + 1e-12
        with pytest.raises(yukti.InputError, match="float32"):
            run.columns(cols)
        cols[5] = x[:, 5].astype(np.float64)  # exact: converted
        np.testing.assert_array_equal(run.columns(cols), run(x))


def test_cluster_model_refuses_column_input(cluster_cnn):
    with pytest.raises(yukti.InputError, match="column input"):
        yukti.runner("cpp", cluster_cnn).columns([np.zeros(3, np.float32)])


def test_onnx_only_model_runs(jet_dnn):
    bare = onnx_only(jet_dnn)
    x = jet_dnn.data.X[:64]
    np.testing.assert_array_equal(yukti.runner("cpp", bare)(x), yukti.runner("cpp", jet_dnn)(x))
