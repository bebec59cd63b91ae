"""yukti.load and the Model handle: ONNX files/bytes, torch modules, Keras models, bad files."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti
from yukti.model import TensorSpec


def _tiny_onnx(batch_dim="N") -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_dim, 3])], [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_load_path_bytes_and_proto_agree(tmp_path):
    proto = _tiny_onnx()
    path = tmp_path / "tiny.onnx"
    onnx.save(proto, path)
    from_path, from_bytes, from_proto = yukti.load(path), yukti.load(path.read_bytes()), yukti.load(proto)
    assert from_path.hash == from_bytes.hash == from_proto.hash
    assert from_path.name == "tiny"
    assert from_path.inputs == (TensorSpec("x", (None, 4), np.dtype(np.float32)),)
    assert from_path.outputs == (TensorSpec("y", (None, 3), np.dtype(np.float32)),)
    assert from_path.op_types == ["MatMul"]
    assert yukti.load(from_path) is from_path


def test_hash_changes_with_weights():
    a, b = _tiny_onnx(), _tiny_onnx()
    b.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones((4, 3), np.float32), "W"))
    assert yukti.load(a).hash != yukti.load(b).hash


def test_fixed_batch_dimension_is_enforced():
    model = yukti.load(_tiny_onnx(batch_dim=2))
    assert model.inputs[0].shape == (2, 4)
    model.validate_inputs(np.zeros((2, 4), np.float32))
    with pytest.raises(yukti.InputError, match="expects size 2 on axis 0"):
        model.validate_inputs(np.zeros((3, 4), np.float32))


def test_save_round_trip(tmp_path):
    model = yukti.load(_tiny_onnx())
    assert yukti.load(model.save(tmp_path / "out" / "m.onnx")).hash == model.hash


@pytest.mark.parametrize(
    "content, match",
    [
        (b"this is not a model at all", "not a valid ONNX model|not a usable ONNX model|failed ONNX validation"),
        (b"", "not a usable ONNX model"),
        (bytes(range(256)) * 4, "not a valid ONNX model|not a usable ONNX model|failed ONNX validation"),
    ],
)
def test_not_onnx_is_a_clear_error(tmp_path, content, match):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(yukti.ModelLoadError, match=match):
        yukti.load(path)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9, 0.99])
def test_truncated_onnx_is_a_clear_error(tmp_path, jet_dnn, fraction):
    data = jet_dnn.onnx_bytes
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(yukti.ModelLoadError, match=r"truncated"):
        yukti.load(path)


def test_missing_file_and_unknown_object(tmp_path):
    with pytest.raises(yukti.ModelLoadError, match="no ONNX file"):
        yukti.load(tmp_path / "nope.onnx")
    with pytest.raises(yukti.ModelLoadError, match="expected an ONNX path"):
        yukti.load(42)


def test_torch_module_exports_with_dynamic_batch():
    torch = pytest.importorskip("torch")
    module = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    model = yukti.load(module, torch.zeros(1, 6), name="small")
    assert model.source == "torch" and model.torch_module is module
    assert model.inputs[0].shape == (None, 6)
    assert max(o.version for o in model.onnx.opset_import if o.domain in ("", "ai.onnx")) >= 17
    x = np.random.default_rng(0).standard_normal((7, 6)).astype(np.float32)
    expected = module(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(yukti.runner("reference", model)(x), expected, atol=1e-6)


def test_torch_module_needs_an_example():
    torch = pytest.importorskip("torch")
    with pytest.raises(yukti.ModelLoadError, match="example input"):
        yukti.load(torch.nn.Linear(2, 2))


def test_keras_model_converts_to_onnx():
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(5, activation="softmax")])
    x = np.random.default_rng(1).standard_normal((9, 16)).astype(np.float32)
    expected = np.asarray(net(x))
    model = yukti.load(net, name="kjet")
    assert model.source == "keras" and model.keras_model is net and model.has_onnx
    assert model.inputs[0].shape == (None, 16) and model.outputs[0].shape == (None, 5)
    np.testing.assert_allclose(yukti.runner("reference", model)(x), expected, atol=1e-5)
    np.testing.assert_allclose(yukti.runner("reference", model, source="original")(x), expected, atol=1e-6)


def test_example_inputs_match_specs(jet_dnn):
    (x,) = jet_dnn.example_inputs(batch_size=5)
    assert x.shape == (5, 16) and x.dtype == np.float32
    assert jet_dnn.validate_inputs(x)[0] is x  # already valid: no copy


def test_a_keras_model_never_called_still_has_its_onnx_form(isolated_yukti_dirs):
    """Keras 3 refuses to export a model that was never called; a user's freshly built one is such."""
    keras = pytest.importorskip("keras")
    import yukti

    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 3), name="constituents")
    pooled = keras.layers.GlobalAveragePooling1D(name="mean")(keras.layers.Dense(8, activation="relu", name="phi")(inputs))
    network = keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="rho")(pooled))
    weights = [w.copy() for w in network.get_weights()]
    model = yukti.load(network, name="never_called")
    assert model.has_onnx and model.inputs[0].shape == (None, 16, 3)
    assert all(np.array_equal(a, b) for a, b in zip(weights, network.get_weights()))  # the call changed nothing
    x = np.random.default_rng(0).standard_normal((4, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(yukti.runner("onnxruntime", model)(x), network(x).numpy(), atol=1e-6)
