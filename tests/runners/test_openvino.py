"""The openvino runner's own behaviour: its options, the dynamic batch, several inputs, refusing the
operators OpenVINO's ONNX frontend cannot convert by name, calls from many threads. Agreement with
the reference on every zoo model is in test_contract.py.

The runner is prepared through its class here, not through the registry, so these tests also run
from a source tree whose installed entry points predate the backend (test_entry_point checks the
declaration itself).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

import yukti
from yukti.options import OptionError

pytest.importorskip("openvino", reason="openvino is not installed (pip install 'yukti[openvino]')")

from yukti.runners.openvino import OpenVINORunner  # noqa: E402  (after the skip: the module needs nothing, the runner does)


def _open(model: yukti.Model, **options) -> OpenVINORunner:
    return OpenVINORunner().prepare(model, **options)


def _close(out: np.ndarray, expected: np.ndarray, tolerance: float = 1e-5) -> bool:
    # the contract's measure: absolute below 1 in magnitude, relative above
    return bool((np.abs(out - expected) / np.maximum(np.abs(expected), 1)).max() <= tolerance)


@pytest.fixture(scope="module")
def jet_fusion(isolated_yukti_dirs):
    return yukti.zoo.get("jet_fusion")


@pytest.fixture(scope="module")
def jet_runner(jet_dnn):
    return _open(jet_dnn)


def _det_model() -> yukti.Model:
    """A valid ONNX graph with an operator OpenVINO's ONNX frontend has no conversion for (Det),
    once unnamed and once named, and feeding a graph output (whose name the placeholder takes)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="rectify"),
             helper.make_node("Det", ["r"], ["d"]),
             helper.make_node("Det", ["r"], ["y"], name="determinant")]
    graph = helper.make_graph(nodes, "dets", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 3])],
                              [helper.make_tensor_value_info("d", TensorProto.FLOAT, ["N"]),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return yukti.load(proto.SerializeToString(), name="dets")


def _det_in_branch_model() -> yukti.Model:
    """Det inside both branches of an If: a partial conversion leaves its placeholders in the bodies."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 3])
    branches = {key: helper.make_graph([helper.make_node("Det", ["x"], [out], name=name)], key, [],
                                       [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N"])])
                for key, out, name in (("then_branch", "t", "det_then"), ("else_branch", "e", ""))}
    graph = helper.make_graph([helper.make_node("If", ["flag"], ["y"], name="branch", **branches)], "branched", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
                              initializer=[helper.make_tensor("flag", TensorProto.BOOL, [], [True])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return yukti.load(proto.SerializeToString(), name="branched_dets")


def test_entry_point():
    """pyproject.toml registers the backend under its own name, pointing at this class."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("tests run outside the source tree: no pyproject.toml beside them")
    target = tomllib.loads(pyproject.read_text())["project"]["entry-points"]["yukti.runners"]["openvino"]
    module, _, attr = target.partition(":")
    __import__(module)
    assert getattr(sys.modules[module], attr) is OpenVINORunner and OpenVINORunner.name == "openvino"


@pytest.mark.parametrize("hint", ["LATENCY", "THROUGHPUT"])
@pytest.mark.parametrize("threads", [1, 2])
def test_threads_and_hint(hint, threads, jet_dnn):
    x = jet_dnn.data.X[:64]
    run = _open(jet_dnn, threads=threads, hint=hint)
    assert run.info["options"] == {"threads": threads, "hint": hint, "precision": "f32"}
    assert run.info["threads_effective"] == threads
    if hint == "LATENCY":
        assert run.info["streams"] == 1  # one stream: every thread works on each call
    assert _close(run(x), yukti.runner("reference", jet_dnn)(x))


def test_float32_by_default(jet_runner):
    # the CPU plugin's own default is bf16 on CPUs with AMX: the float answer needs f32 asked for
    assert jet_runner.info["inference_precision"] == "f32"


def test_bf16_keeps_the_physics_answer(jet_dnn):
    x = jet_dnn.data.X[:512]
    run = _open(jet_dnn, precision="bf16")
    assert run.info["inference_precision"] in ("bf16", "f32")  # f32 where the CPU has no bf16 arithmetic
    ref = yukti.runner("reference", jet_dnn)(x)
    assert np.mean(run(x).argmax(axis=1) == ref.argmax(axis=1)) >= 0.95


@pytest.mark.parametrize("options, match", [({"hint": "FAST"}, "hint must be one of"),
                                            ({"threads": 0}, "threads must be"),
                                            ({"precision": "int8"}, "precision must be one of")])
def test_bad_options_refused(options, match, jet_dnn):
    with pytest.raises(OptionError, match=match):
        _open(jet_dnn, **options)


def test_dynamic_batch(jet_runner, jet_dnn):
    """One compiled model serves every batch size, in any order (the shape changes between calls)."""
    x = jet_dnn.data.X[np.arange(1000) % len(jet_dnn.data)]
    ref = yukti.runner("reference", jet_dnn)(x)
    for batch in (1, 7, 1000, 1, 7):
        out = jet_runner(x[:batch])
        assert out.shape == (batch, 5) and out.dtype == np.float32
        assert _close(out, ref[:batch])


def test_outputs_are_not_reused_buffers(jet_runner, jet_dnn):
    x = jet_dnn.data.X[:4]
    first = jet_runner(x)
    kept = first.copy()
    jet_runner(jet_dnn.data.X[4:8])
    np.testing.assert_array_equal(first, kept)


def test_two_inputs(jet_fusion):
    """The zoo's jet_fusion takes jet features and constituents: by position or by name, in any order."""
    jet, constituents = (a[:128] for a in jet_fusion.data.inputs)
    names = [spec.name for spec in jet_fusion.inputs]
    run = _open(jet_fusion)
    ref = yukti.runner("reference", jet_fusion)([jet, constituents])
    assert _close(run([jet, constituents]), ref)
    np.testing.assert_array_equal(run({names[1]: constituents, names[0]: jet}), run([jet, constituents]))
    assert _close(run([jet[:1], constituents[:1]]), ref[:1])


@pytest.mark.parametrize("make, nodes", [(_det_model, {("Det", "#1"), ("Det", "determinant")}),
                                         (_det_in_branch_model, {("Det", "det_then"), ("Det", "branch/#0")})])
def test_unsupported_operator_refused_by_name(make, nodes):
    model = make()
    support = OpenVINORunner.supports(model)
    assert not support and not support.by_design
    assert set(support.unsupported) == nodes
    assert "Det" in support.reason and "Relu" not in support.describe()
    node = sorted(name for _, name in nodes)[-1]
    with pytest.raises(yukti.UnsupportedModelError, match=rf"Det \(node {node}\)"):
        _open(model)


def test_supported_model_answer_is_kept(jet_dnn):
    assert OpenVINORunner.supports(jet_dnn) is OpenVINORunner.supports(jet_dnn)  # converted once, not per call


def test_concurrent_calls_of_different_batches(jet_dnn):
    """Threads calling one runner at once, each with its own batch size, each get their own answer
    (each call holds an InferRequest of its own)."""
    run = _open(jet_dnn)
    assert run.info["thread_safe"]
    batches = [1, 3, 17, 64, 200, 5]
    inputs = [jet_dnn.data.X[i:i + b] for i, b in enumerate(batches)]
    expected = [run(x) for x in inputs]
    start = threading.Barrier(len(batches))
    failures: list[str] = []

    def work(i: int) -> None:
        start.wait()
        for _ in range(30):
            out = run(inputs[i])
            if not np.array_equal(out, expected[i]):
                failures.append(f"batch {batches[i]}: shape {out.shape}, max diff {np.abs(out - expected[i]).max()}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]


def test_missing_package_is_a_clear_reason(monkeypatch, jet_dnn):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    ok, reason = OpenVINORunner.available()
    assert not ok and "openvino cannot be imported" in reason
    with pytest.raises(yukti.BackendUnavailableError, match="openvino cannot be imported"):
        _open(jet_dnn)
