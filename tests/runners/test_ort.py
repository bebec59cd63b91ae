"""The onnxruntime runner's options."""

from __future__ import annotations

import numpy as np
import pytest

import yukti

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_every_optimisation_level_gives_the_same_answer(level, jet_dnn):
    x = jet_dnn.data.X[:64]
    run = yukti.runner("onnxruntime", jet_dnn, graph_optimization_level=level)
    assert run.info["options"]["graph_optimization_level"] == level
    np.testing.assert_allclose(run(x), yukti.runner("reference", jet_dnn)(x), atol=1e-5)


def test_bad_optimisation_level(jet_dnn):
    with pytest.raises(ValueError, match="graph_optimization_level must be one of"):
        yukti.runner("onnxruntime", jet_dnn, graph_optimization_level="max")


def test_explicit_provider_list_and_info(jet_dnn):
    run = yukti.runner("onnxruntime", jet_dnn, providers=["CPUExecutionProvider"], threads=2)
    assert run.info["providers"] == ["CPUExecutionProvider"]
    assert run.info["options"]["threads"] == 2
    assert run.info["artifact_bytes"] == len(jet_dnn.onnx_bytes)


def test_missing_provider_is_a_clear_error(jet_dnn):
    with pytest.raises(yukti.BackendUnavailableError, match="TensorrtExecutionProvider"):
        yukti.runner("onnxruntime", jet_dnn, providers=["TensorrtExecutionProvider", "CPUExecutionProvider"])
