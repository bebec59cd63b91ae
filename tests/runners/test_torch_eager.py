"""The torch runner's own behaviour: original module vs onnx2torch conversion, refusals."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import yukti
from zoo_variants import onnx_only

pytest.importorskip("torch")


def test_original_module_is_used_when_present(jet_dnn):
    assert yukti.runner("torch", jet_dnn).info["module_from"] == "original module"


@pytest.mark.parametrize("name", ["jet_dnn", "cluster_cnn"])
def test_onnx_conversion_matches_reference(name, zoo_models):
    model = zoo_models[name]
    run = yukti.runner("torch", model, source="onnx")
    assert run.info["module_from"] == "onnx2torch"
    x = model.data.X[:128]
    np.testing.assert_allclose(run(x), yukti.runner("reference", model)(x), atol=1e-4)


def test_conversion_leaves_no_torchvision_placeholder(jet_dnn):
    yukti.runner("torch", onnx_only(jet_dnn))
    module = sys.modules.get("torchvision")
    assert module is None or getattr(module, "__file__", None) is not None  # a real torchvision, or none


def test_unsupported_operator_is_named_with_its_node():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="act"),
         helper.make_node("MyCustomOp", ["r"], ["y"], name="custom_node", domain="com.example")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)])
    model = yukti.Model(name="custom", inputs=(yukti.TensorSpec("x", (None, 4), np.dtype(np.float32)),),
                        outputs=(yukti.TensorSpec("y", (None, 4), np.dtype(np.float32)),), source="onnx",
                        _onnx_bytes=proto.SerializeToString())
    support = yukti.runner_class("torch").supports(model)
    assert not support and ("MyCustomOp", "custom_node") in support.unsupported
    with pytest.raises(yukti.UnsupportedModelError, match="MyCustomOp.*custom_node"):
        yukti.runner("torch", model)


def test_module_source_needs_a_module(jet_dnn):
    with pytest.raises(ValueError, match="has no torch module"):
        yukti.runner("torch", onnx_only(jet_dnn), source="module")


def test_threads_option_sets_torch_threads(jet_dnn):
    import torch

    before = torch.get_num_threads()
    try:
        yukti.runner("torch", jet_dnn, threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
