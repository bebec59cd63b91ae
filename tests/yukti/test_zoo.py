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
    assert {"jet_dnn", "jet_dnn_keras", "cluster_cnn", "mdt_conv1d", "jet_deepsets", "jet_deepsets_keras", "jet_transformer",
            "jet_fusion", "fad_autoencoder"} <= set(yukti.zoo.names())


# -- constituent-level taggers, a two-input tagger, an autoencoder ------------------------------------


def test_jet_deepsets_pools_over_particles(jet_deepsets):
    assert jet_deepsets.inputs[0].shape == (None, 16, 3) and jet_deepsets.outputs[0].shape == (None, 5)
    assert "ReduceMean" in jet_deepsets.op_types and jet_deepsets.data.synthetic
    x = jet_deepsets.data.X[:500]
    probs = yukti.runner("onnxruntime", jet_deepsets)(x)
    assert (probs.argmax(1) == jet_deepsets.data.y[:500]).mean() > 0.5  # five classes: chance is 0.2
    # a set function: permuting the particles changes nothing
    shuffled = yukti.runner("onnxruntime", jet_deepsets)(x[:, np.random.default_rng(0).permutation(16)])
    np.testing.assert_allclose(shuffled, probs, atol=1e-5)
    assert jet_deepsets.meta["fixed_point"]["precision"].startswith("ap_fixed<16,6")


def test_jet_transformer_attends_and_masks(jet_transformer):
    ops = set(jet_transformer.op_types)
    assert {"LayerNormalization", "Softmax", "Where", "Equal", "Erf"} <= ops
    # attention: a MatMul whose two operands are both computed (q @ k^T), not weights
    inits = {i.name for i in jet_transformer.onnx.graph.initializer}
    constants = {o for n in jet_transformer.onnx.graph.node if n.op_type == "Constant" for o in n.output} | inits
    assert any(n.op_type == "MatMul" and not set(n.input) & constants for n in jet_transformer.onnx.graph.node)
    x = jet_transformer.data.X[:500]
    probs = yukti.runner("onnxruntime", jet_transformer)(x)
    assert (probs.argmax(1) == jet_transformer.data.y[:500]).mean() > 0.5
    assert jet_transformer.data.X[:, :, 0].min() == 0  # zero-padded particles, which the mask hides from attention


def test_jet_fusion_takes_two_inputs():
    model = yukti.zoo.get("jet_fusion")
    assert [i.name for i in model.inputs] == ["jet", "constituents"]
    assert [i.shape for i in model.inputs] == [(None, 6), (None, 16, 3)]
    jet, constituents = model.data.inputs
    probs = yukti.runner("onnxruntime", model)({"jet": jet[:500], "constituents": constituents[:500]})
    assert (probs.argmax(1) == model.data.y[:500]).mean() > 0.5


def test_fad_autoencoder_scores_anomalies():
    from yukti import metrics

    model = yukti.zoo.get("fad_autoencoder")
    assert model.inputs[0].shape == (None, 77) and model.outputs[0].shape == (None, 76)
    assert model.task == "anomaly" and model.reconstructs == (0, 76) and metrics.infer_task(model) == "anomaly"
    losses = model.meta["training"]["loss_per_epoch"]
    assert losses[-1] < 0.6 * losses[0]
    x = model.data.X[:4000]
    score = metrics.anomaly_score(yukti.runner("onnxruntime", model)(x), metrics.reconstruction_target(model, x))
    assert metrics.roc_summary(score, model.data.y[:4000] == model.data.signal_class)["auc"] > 0.7
    result = yukti.benchmark(model, backends=["onnxruntime"], batch_sizes=[64], store=False,
                             policy=yukti.TimingPolicy(time_budget_s=0.02, min_calls=3, warmup_calls=1, warmup_s=0.0))
    row = result.iloc[0]
    assert row["task"] == "anomaly" and row["auc"] > 0.7
    assert "Keras" in yukti.zoo.describe()["jet_dnn_keras"]
