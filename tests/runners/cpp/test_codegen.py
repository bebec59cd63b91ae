"""The cpp backend's code generation is done once per model: supports(), prepare and export share it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti
from yukti.runners.cpp import codegen, ir


def _scaled(scale: float) -> yukti.Model:
    """A one-node model whose hash is new for every scale (never generated before in this process)."""
    graph = helper.make_graph([helper.make_node("Mul", ["x", "s"], ["y"], name="mul")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(np.full(4, scale, np.float32), "s")])
    return yukti.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))


@pytest.fixture
def ir_builds(monkeypatch):
    calls: list[int] = []
    original = ir.from_onnx

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(ir, "from_onnx", counting)
    return calls


def test_supports_then_for_model_builds_the_ir_once(ir_builds):
    model = _scaled(1.25)
    assert yukti.runner_class("cpp").supports(model)
    first = codegen.for_model(model)
    assert codegen.for_model(model) is first
    assert len(ir_builds) == 1
    assert codegen.for_model(model, prefix="net_") is not first  # another prefix is other code
    assert len(ir_builds) == 2


def test_a_refusal_is_remembered_and_raised_fresh(ir_builds):
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], name="over_batch", axis=0)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = yukti.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    support = yukti.runner_class("cpp").supports(model)
    assert not support and "batch axis" in support.reason
    errors = []
    for _ in range(2):
        with pytest.raises(yukti.UnsupportedModelError, match="batch axis") as caught:
            codegen.for_model(model)
        errors.append(caught.value)
    assert errors[0] is not errors[1]
    assert len(ir_builds) == 1


def test_the_memo_is_bounded(ir_builds):
    models = [_scaled(2.0 + i) for i in range(codegen._Generated.MAX_ENTRIES + 1)]
    for model in models:
        codegen.for_model(model)
    codegen.for_model(models[-1])
    assert len(ir_builds) == len(models)
    codegen.for_model(models[0])  # the oldest was evicted: built again
    assert len(ir_builds) == len(models) + 1


def test_concurrent_callers_get_the_same_code():
    model = _scaled(-3.5)
    sources: list[codegen.Source] = []
    threads = [threading.Thread(target=lambda: sources.append(codegen.for_model(model))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sources) == 8 and len({(s.header, s.body) for s in sources}) == 1
