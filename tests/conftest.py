"""Shared fixtures: an isolated cache and results store per test session, zoo models trained once."""

from __future__ import annotations

import os

import pytest

from zoo_variants import onnx_only


@pytest.fixture(scope="session", autouse=True)
def isolated_yukti_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Set before any test builds a cache or stores a result. A CI run may point YUKTI_TEST_CACHE at
    # a persistent folder to reuse trained zoo models between runs.
    cache = os.environ.get("YUKTI_TEST_CACHE")
    if not cache and os.environ.get("PYTEST_XDIST_WORKER"):
        # pytest-xdist workers share one cache (their base folders share a parent): a zoo model is
        # trained and an artifact built once, by whichever worker asks first (the cache locks per entry)
        shared = tmp_path_factory.getbasetemp().parent / "shared-cache"
        shared.mkdir(exist_ok=True)
        cache = str(shared)
    os.environ["YUKTI_CACHE_DIR"] = cache or str(tmp_path_factory.mktemp("cache"))
    os.environ["YUKTI_RESULTS_DIR"] = str(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="session")
def jet_dnn(isolated_yukti_dirs: None):
    import yukti

    return yukti.zoo.get("jet_dnn")


@pytest.fixture(scope="session")
def cluster_cnn(isolated_yukti_dirs: None):
    import yukti

    return yukti.zoo.get("cluster_cnn")


@pytest.fixture(scope="session")
def jet_dnn_keras(isolated_yukti_dirs: None):
    import yukti

    return yukti.zoo.get("jet_dnn_keras")




@pytest.fixture(scope="session")
def mdt_conv1d(isolated_yukti_dirs: None):
    import yukti

    return yukti.zoo.get("mdt_conv1d")


@pytest.fixture(scope="session")
def jet_deepsets(isolated_yukti_dirs: None):
    import yukti

    return yukti.zoo.get("jet_deepsets")


@pytest.fixture(scope="session")
def jet_transformer(isolated_yukti_dirs: None):
    import yukti

    return yukti.zoo.get("jet_transformer")


@pytest.fixture(scope="session")
def zoo_models(jet_dnn, cluster_cnn, jet_dnn_keras, mdt_conv1d, jet_deepsets, jet_transformer, isolated_yukti_dirs):
    """Every zoo model as trained (torch module or Keras model kept), and some torch ones also as a
    bare ONNX file (converters exercised: onnx2torch, hls4ml's ONNX frontend). The Keras models' ONNX
    forms come from tf2onnx, so they exercise that path."""
    import yukti

    return {"jet_dnn": jet_dnn, "cluster_cnn": cluster_cnn, "jet_dnn_keras": jet_dnn_keras,
            "jet_dnn_onnx": onnx_only(jet_dnn), "cluster_cnn_onnx": onnx_only(cluster_cnn), "mdt_conv1d": mdt_conv1d,
            "jet_deepsets": jet_deepsets, "jet_deepsets_keras": yukti.zoo.get("jet_deepsets_keras"),
            "jet_transformer": jet_transformer, "jet_transformer_onnx": onnx_only(jet_transformer),
            "fad_autoencoder": yukti.zoo.get("fad_autoencoder"), "jet_fusion": yukti.zoo.get("jet_fusion")}
