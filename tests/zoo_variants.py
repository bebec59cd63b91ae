"""Zoo variants the contract tests run, importable by test modules under a name no other file
shares (several folders have a conftest.py, so `from conftest import ...` is ambiguous)."""

from __future__ import annotations

from typing import Any

ZOO_VARIANTS = ("jet_dnn", "cluster_cnn", "jet_dnn_keras", "jet_dnn_onnx", "cluster_cnn_onnx", "mdt_conv1d",
                "jet_deepsets", "jet_deepsets_keras", "jet_transformer", "jet_transformer_onnx", "fad_autoencoder",
                "jet_fusion")


def onnx_only(model: Any) -> Any:
    """The same network as a user's bare ONNX file: no torch module, so converters are exercised."""
    import yukti

    bare = yukti.load(model.onnx_bytes, name=f"{model.name}_onnx")
    bare.data, bare.task, bare.reconstructs = model.data, model.task, model.reconstructs
    return bare
