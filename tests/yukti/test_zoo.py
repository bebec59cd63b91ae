"""The zoo: deterministic training, the advertised architectures, cached artifacts."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

import yukti


def _gemm_shapes(model):
    inits = {i.name: numpy_helper.to_array(i) for i in model.onnx.graph.initializer}
    return [inits[n.input[1]].shape for n in model.onnx.graph.node if n.op_type == "Gemm"]


def test_jet_dnn_is_16_64_32_32_5(jet_dnn):
    shapes = _gemm_shapes(jet_dnn)
    # torch exports Linear as Gemm with transB=1: weights are (out, in)
    assert [s[::-1] for s in shapes] == [(16, 64), (64, 32), (32, 32), (32, 5)]
    assert jet_dnn.op_types == ["Gemm", "Relu", "Softmax"]
    assert jet_dnn.inputs[0].shape == (None, 16) and jet_dnn.outputs[0].shape == (None, 5)


def test_jet_dnn_learned_something(jet_dnn):
    probs = yukti.runner("onnxruntime", jet_dnn)(jet_dnn.data.X)
    accuracy = (probs.argmax(1) == jet_dnn.data.y).mean()
    assert accuracy > 0.5  # five balanced classes: chance is 0.2
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    losses = jet_dnn.meta["training"]["loss_per_epoch"]
    assert losses[-1] < losses[0]


def test_cluster_cnn_has_convolutions(cluster_cnn):
    assert {"Conv", "MaxPool"} <= set(cluster_cnn.op_types)
    assert cluster_cnn.inputs[0].shape == (None, 1, 16, 16)
    probs = yukti.runner("onnxruntime", cluster_cnn)(cluster_cnn.data.X)
    assert (probs.argmax(1) == cluster_cnn.data.y).mean() > 0.5  # three classes: chance is 1/3


def test_training_is_deterministic_and_cached(jet_dnn, tmp_path):
    again = yukti.zoo.get("jet_dnn")  # same cache: no retraining, same bytes
    assert again.hash == jet_dnn.hash
    fresh = yukti.zoo.get("jet_dnn", cache=yukti.ArtifactCache(tmp_path))  # retrained from scratch
    assert fresh.hash == jet_dnn.hash


def test_zoo_models_carry_preprocessed_labelled_data(jet_dnn):
    data = jet_dnn.data
    assert data.synthetic and data.y is not None and len(data) == len(data.y)
    assert abs(float(data.X.mean())) < 0.1  # standardized with the training split's statistics
    assert "standardized" in data.meta["preprocessing"]


def test_unknown_zoo_model():
    with pytest.raises(yukti.UnknownNameError, match=r"unknown zoo model 'resnet'.*jet_dnn"):
        yukti.zoo.get("resnet")


# -- the Keras-trained twin ----------------------------------------------------------------------


def test_jet_dnn_keras_is_jet_dnns_twin(jet_dnn_keras, jet_dnn):
    assert jet_dnn_keras.source == "keras" and jet_dnn_keras.keras_model is not None
    kernels = [w.shape for w in jet_dnn_keras.keras_model.get_weights() if w.ndim == 2]
    assert kernels == [(16, 64), (64, 32), (32, 32), (32, 5)]
    assert jet_dnn_keras.keras_model.layers[-1].get_config()["activation"] == "softmax"
    # the same data, split and standardization as the torch model
    np.testing.assert_array_equal(jet_dnn_keras.data.X, jet_dnn.data.X)
    np.testing.assert_array_equal(jet_dnn_keras.data.y, jet_dnn.data.y)
    assert [(s.name, s.shape) for s in jet_dnn_keras.inputs + jet_dnn_keras.outputs] == \
        [(s.name, s.shape) for s in jet_dnn.inputs + jet_dnn.outputs]


def test_jet_dnn_keras_onnx_form_is_the_keras_model(jet_dnn_keras):
    assert "Softmax" in jet_dnn_keras.op_types  # converted by tf2onnx, not copied from torch
    x = jet_dnn_keras.data.X[:512]
    onnx_out = yukti.runner("onnxruntime", jet_dnn_keras)(x)
    np.testing.assert_allclose(onnx_out, jet_dnn_keras.keras_model(x, training=False).numpy(), rtol=0, atol=1e-5)


def test_jet_dnn_keras_learned_as_much_as_jet_dnn(jet_dnn_keras, jet_dnn):
    accuracy = {}
    for model in (jet_dnn_keras, jet_dnn):
        probs = yukti.runner("onnxruntime", model)(model.data.X)
        accuracy[model.name] = (probs.argmax(1) == model.data.y).mean()
    assert accuracy["jet_dnn_keras"] > 0.5  # five balanced classes: chance is 0.2
    assert abs(accuracy["jet_dnn_keras"] - accuracy["jet_dnn"]) < 0.05, accuracy  # same net, same data
    losses = jet_dnn_keras.meta["training"]["loss_per_epoch"]
    assert losses[-1] < losses[0]


def test_jet_dnn_keras_training_is_deterministic_and_cached(jet_dnn_keras, tmp_path):
    assert yukti.zoo.get("jet_dnn_keras").hash == jet_dnn_keras.hash  # cache hit
    fresh = yukti.zoo.get("jet_dnn_keras", cache=yukti.ArtifactCache(tmp_path))  # retrained from scratch
    assert fresh.hash == jet_dnn_keras.hash
    for a, b in zip(fresh.keras_model.get_weights(), jet_dnn_keras.keras_model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_zoo_lists_every_framework():
    assert {"jet_dnn", "jet_dnn_keras", "cluster_cnn"} <= set(yukti.zoo.names())
    assert "Keras" in yukti.zoo.describe()["jet_dnn_keras"]
