"""yukti.limits: a small model file that describes gigabytes is refused before anything is allocated."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti
from yukti import limits
from yukti.errors import ModelLoadError, UnsupportedModelError


def concat_bomb(doublings: int) -> onnx.ModelProto:
    """A one-element constant doubled `doublings` times by chained Concat nodes, then averaged and
    added to the input: about 2 KB of ONNX that folds to 4 * 2**doublings bytes."""
    nodes, previous = [], "c0"
    for i in range(doublings):
        nodes.append(helper.make_node("Concat", [previous, previous], [f"c{i + 1}"], name=f"double_{i}", axis=0))
        previous = f"c{i + 1}"
    nodes += [helper.make_node("ReduceMean", [previous], ["m"], name="mean", keepdims=0),
              helper.make_node("Add", ["x", "m"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "bomb", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                              [numpy_helper.from_array(np.ones(1, np.float32), "c0")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def first_doubling_over_limit() -> int:
    return int(np.log2(limits.MAX_TENSOR_ELEMENTS)) + 1  # c_k holds 2**k elements


def test_load_refuses_a_concat_bomb_naming_the_node() -> None:
    data = concat_bomb(40).SerializeToString()
    assert len(data) < 4096
    tracemalloc.start()
    try:
        with pytest.raises(ModelLoadError, match=rf"node 'double_{first_doubling_over_limit() - 1}' \(Concat\)"):
            yukti.load(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_cpp_ir_refuses_the_bomb_without_load_and_before_allocating() -> None:
    """ir.from_onnx takes a ModelProto (conformance tests, other callers): it checks sizes itself,
    before ONNX's data propagation or folding would materialise the values."""
    from yukti.runners.cpp import ir

    tracemalloc.start()
    try:
        with pytest.raises(UnsupportedModelError, match="double_"):
            ir.from_onnx(concat_bomb(40))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_a_bomb_under_the_limits_still_folds_and_runs() -> None:
    from yukti.runners.cpp import ir

    graph = ir.from_onnx(concat_bomb(12))
    assert [n.op for n in graph.nodes] == ["Add"]  # the whole constant chain folded away


def test_folding_refuses_value_sized_ops_of_unknown_size() -> None:
    from yukti.runners.cpp.ir import _check_fold_size

    node = helper.make_node("Tile", ["a", "r"], ["t"])
    constants = {"a": np.ones(2, np.float32), "r": np.array([10**12])}
    with pytest.raises(UnsupportedModelError, match="cannot tell"):
        _check_fold_size(node, "tile", ["a", "r"], constants, {}, 0)
    assert _check_fold_size(node, "tile", ["a", "r"], constants, {"t": (20,)}, 0) == 20 * 8
    with pytest.raises(UnsupportedModelError, match="MAX_CONSTANT_BYTES"):
        _check_fold_size(node, "tile", ["a", "r"], constants, {"t": (20,)}, limits.MAX_CONSTANT_BYTES)


def test_node_count_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_NODES", 10)
    with pytest.raises(ModelLoadError, match="42 nodes"):
        yukti.load(concat_bomb(40).SerializeToString())


def test_generated_source_limit_names_the_node(monkeypatch: pytest.MonkeyPatch, jet_dnn) -> None:
    from yukti.runners.cpp import codegen

    monkeypatch.setattr(limits, "MAX_GENERATED_SOURCE_BYTES", 20_000)
    monkeypatch.setattr(codegen, "_generated", codegen._Generated())  # code generated earlier is remembered
    support = yukti.runner_class("cpp").supports(jet_dnn)
    assert not support and "MAX_GENERATED_SOURCE_BYTES" in support.reason and "at node" in support.reason


def test_yukti_check_on_a_bomb_exits_2_quickly(tmp_path) -> None:
    path = tmp_path / "bomb.onnx"
    path.write_bytes(concat_bomb(40).SerializeToString())
    done = subprocess.run([sys.executable, "-m", "yukti.cli", "check", str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "double_" in done.stdout + done.stderr and "yukti.limits" in done.stdout + done.stderr
