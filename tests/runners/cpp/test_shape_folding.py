"""Shape arithmetic around reshapes (Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as
`x.view(x.size(0), -1)` exports) is folded when only the batch is dynamic; anything that would use
the batch size itself is refused naming the node."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti

pytestmark = pytest.mark.skipif(not yukti.runner_class("cpp").available()[0], reason="no C++ compiler")


def _graph(nodes, initializers, output_shape):
    graph = helper.make_graph(nodes, "shape_ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    return yukti.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), name="shape_ops")


def _flatten_by_size(extra_nodes=(), extra_inits=None, target="shape"):
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]), *extra_nodes,
             helper.make_node("Concat", ["n1", "minus_one"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", target], ["y"])]
    inits = {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64), "minus_one": np.array([-1], np.int64),
             **(extra_inits or {})}
    return _graph(nodes, inits, ["N", 6])


def test_view_by_size_folds_and_agrees(isolated_yukti_dirs):
    model = _flatten_by_size()
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    y = yukti.runner("cpp", model)(x)
    np.testing.assert_array_equal(y, x.reshape(5, 6))


def test_a_torch_view_of_its_own_size(isolated_yukti_dirs):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = torch.nn.Conv1d(4, 6, 3), torch.nn.Linear(6 * 14, 3)

        def forward(self, x):
            h = torch.relu(self.conv(x))
            return torch.softmax(self.fc(h.view(h.size(0), -1)), dim=1)

    torch.manual_seed(0)
    model = yukti.load(Net().eval(), torch.zeros(2, 4, 16), name="view_by_size")
    assert {"Shape", "Gather"} <= {n.op_type for n in model.onnx.graph.node}
    x = np.random.default_rng(1).standard_normal((300, 4, 16)).astype(np.float32)
    reference = yukti.runner("onnxruntime", model)(x)
    np.testing.assert_allclose(yukti.runner("cpp", model)(x), reference, atol=1e-5)


def test_per_sample_dimensions_become_constants(isolated_yukti_dirs):
    # Reshape to [N, d1 * d2] with d1, d2 read from the input's shape: no batch in the product
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "one", "three"], ["dims"]),
             helper.make_node("ReduceProd", ["dims"], ["size"], keepdims=1),
             helper.make_node("Concat", ["minus_one", "size"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    model = _graph(nodes, {"one": np.array([1], np.int64), "three": np.array([3], np.int64),
                           "minus_one": np.array([-1], np.int64)}, ["N", 6])
    x = np.random.default_rng(2).standard_normal((4, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(yukti.runner("cpp", model)(x), x.reshape(4, 6))


def test_arithmetic_on_the_batch_size_is_refused(isolated_yukti_dirs):
    model = _flatten_by_size([helper.make_node("Mul", ["n1", "two"], ["n2"])], {"two": np.array([2], np.int64)})
    # the Concat now reads n1 (unchanged graph wiring): make it read the doubled batch instead
    proto = model.onnx
    for node in proto.graph.node:
        if node.op_type == "Concat":
            node.input[0] = "n2"
    doubled = yukti.load(proto.SerializeToString(), name="batch_times_two")
    support = yukti.runner_class("cpp").supports(doubled)
    assert not support and "batch size" in support.describe()
