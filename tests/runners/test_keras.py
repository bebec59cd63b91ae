"""The keras runner's own behaviour: Keras-only scope, XLA variant, honest thread reporting."""

from __future__ import annotations

import os

import numpy as np
import pytest

import yukti
from zoo_variants import onnx_only

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def plain(jet_dnn_keras):
    return yukti.runner("keras", jet_dnn_keras)


def test_refuses_models_without_keras_by_design(jet_dnn):
    for model in (jet_dnn, onnx_only(jet_dnn)):
        support = yukti.runner_class("keras").supports(model)
        assert not support and support.by_design
        assert "needs the original Keras model" in support.reason
    with pytest.raises(yukti.UnsupportedModelError, match="needs the original Keras model"):
        yukti.runner("keras", jet_dnn)


def test_matches_the_keras_model_itself(plain, jet_dnn_keras):
    x = jet_dnn_keras.data.X[:500]
    expected = jet_dnn_keras.keras_model(x, training=False).numpy()
    np.testing.assert_allclose(plain(x), expected, rtol=0, atol=1e-6)


def test_jit_compile_agrees_at_every_batch_size(plain, jet_dnn_keras):
    xla = yukti.runner("keras", jet_dnn_keras, jit_compile=True)
    assert xla.info["jit_compile"] is True and plain.info["jit_compile"] is False
    x = jet_dnn_keras.data.X
    for batch in (1, 7, 300, 1024):  # XLA compiles once per new shape: each must be right
        np.testing.assert_allclose(xla(x[:batch]), plain(x[:batch]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("options, message", [
    ({"jit_compile": "yes"}, "jit_compile must be True or False"),
    ({"device": "tpu"}, r"device must be one of \['cpu', 'cuda'\]"),
    ({"threads": 0}, "threads must be an integer >= 1"),
])
def test_bad_options_are_named(jet_dnn_keras, options, message):
    with pytest.raises(ValueError, match=message):
        yukti.runner("keras", jet_dnn_keras, **options)


def test_cuda_without_a_gpu_is_unavailable(jet_dnn_keras):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees a GPU here")
    with pytest.raises(yukti.BackendUnavailableError, match="TensorFlow sees no GPU"):
        yukti.runner("keras", jet_dnn_keras, device="cuda")


def test_info_reports_versions_and_the_saved_model(plain, jet_dnn_keras):
    info = plain.info
    assert info.versions == {"tensorflow": tf.__version__, "keras": keras.__version__}
    assert info["artifact_kind"] == ".keras file"
    assert info["artifact_bytes"] == os.path.getsize(info["artifact_path"]) > 0
    # the artifact is the deployable model: reloaded, it gives the same answers
    reloaded = keras.saving.load_model(info["artifact_path"])
    x = jet_dnn_keras.data.X[:64]
    np.testing.assert_array_equal(reloaded(x, training=False).numpy(), jet_dnn_keras.keras_model(x, training=False).numpy())


def test_threads_report_what_tensorflow_really_uses(jet_dnn_keras):
    # A Keras model exists, so TensorFlow has initialised and its pools are fixed for the process.
    configured = tf.config.threading.get_intra_op_parallelism_threads()
    in_use = configured or os.cpu_count()
    other = yukti.runner("keras", jet_dnn_keras, threads=in_use + 1)  # must not crash
    assert other.info["threads_applied"] is False
    assert other.info["tf_intra_op_threads"] == in_use
    assert "already initialised" in other.info["threads_note"]
    assert tf.config.threading.get_intra_op_parallelism_threads() == configured  # untouched
    same = yukti.runner("keras", jet_dnn_keras, threads=in_use)
    assert same.info["threads_applied"] is True and same.info["tf_intra_op_threads"] == in_use


def test_several_inputs_and_outputs_keep_their_order():
    a = keras.Input((3,), name="a")
    b = keras.Input((2,), name="b")
    joined = keras.layers.Concatenate()([a, keras.layers.Dense(3, name="proj")(b)])
    network = keras.Model([a, b], [keras.layers.Dense(4, name="first")(joined), keras.layers.Dense(1, name="second")(a)])
    model = yukti.load(network, name="two_by_two")
    rng = np.random.default_rng(0)
    xa, xb = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal((5, 2)).astype(np.float32)
    run = yukti.runner("keras", model)
    names = [spec.name for spec in model.inputs]
    by_name = {"a": xa, "b": xb}
    out = run({name: by_name[name.split(":")[0]] for name in names})
    expected = network([xa, xb], training=False)
    assert isinstance(out, tuple) and len(out) == 2
    for got, want, spec in zip(out, expected, model.outputs):
        assert got.shape[1:] == spec.shape[1:]  # the order of the model's (ONNX) output specs
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-6)
