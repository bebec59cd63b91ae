"""CUDA paths of the runners. They run where a CUDA device is present and skip cleanly elsewhere;
the error a user gets when asking for CUDA without one is tested everywhere."""

from __future__ import annotations

import numpy as np
import pytest

import yukti


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _ort_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not _torch_cuda(), reason="no CUDA device visible to torch")
def test_torch_on_cuda_matches_reference(jet_dnn):
    x = jet_dnn.data.X[:512]
    np.testing.assert_allclose(yukti.runner("torch", jet_dnn, device="cuda")(x), yukti.runner("reference", jet_dnn)(x), atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not _ort_cuda(), reason="this onnxruntime build has no CUDAExecutionProvider")
def test_onnxruntime_on_cuda_matches_reference(jet_dnn):
    run = yukti.runner("onnxruntime", jet_dnn, device="cuda")
    assert run.info["providers"][0] == "CUDAExecutionProvider"
    x = jet_dnn.data.X[:512]
    np.testing.assert_allclose(run(x), yukti.runner("reference", jet_dnn)(x), atol=1e-5)


@pytest.mark.skipif(_torch_cuda(), reason="checks the error raised when no CUDA device exists")
def test_torch_cuda_without_device_is_a_clear_error(jet_dnn):
    pytest.importorskip("torch")
    with pytest.raises(yukti.BackendUnavailableError, match="no CUDA device"):
        yukti.runner("torch", jet_dnn, device="cuda")


@pytest.mark.skipif(_ort_cuda(), reason="checks the error raised when the CUDA provider is missing")
def test_onnxruntime_cuda_without_provider_is_a_clear_error(jet_dnn):
    pytest.importorskip("onnxruntime")
    with pytest.raises(yukti.BackendUnavailableError, match="CUDAExecutionProvider"):
        yukti.runner("onnxruntime", jet_dnn, device="cuda")
