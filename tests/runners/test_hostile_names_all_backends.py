"""Every backend, on a model whose every name is hostile: nothing executes, the answer stays right.

Backends turn names into code in different places (our C++, torch.fx's Python for onnx2torch
modules, hls4ml's C++), so this is parametrized from the registry like the contract tests. Quick
backends take the whole corpus; slow-to-prepare ones one combined payload.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import yukti
from hostile_names import CANARY, PAYLOADS, hostile_dense_model, inputs_for

BACKENDS = yukti.registry.names()
QUICK = {"reference", "onnxruntime", "torch"}
# One name carrying a C++ statement after a newline, a quote-paren that ends torch.fx's
# getattr(self, "..."), a CMake command, a directive and a comment-continuing backslash.
COMBINED = PAYLOADS[0] + PAYLOADS[27] + PAYLOADS[16] + PAYLOADS[33] + PAYLOADS[30]


def _cases(backend: str) -> list[str]:
    return PAYLOADS if backend in QUICK else [COMBINED]


CASES = [(backend, index) for backend in BACKENDS for index in range(len(_cases(backend)))]


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "index"), CASES, ids=[f"{b}-{i}" for b, i in CASES])
def test_hostile_names_never_run(backend: str, index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = yukti.registry.backend_info(backend)
    if not info.available:
        pytest.skip(f"backend {backend!r} is not available here: {info.reason}")
    monkeypatch.chdir(tmp_path)
    payload = _cases(backend)[index]
    proto = hostile_dense_model(payload)
    model = yukti.load(proto.SerializeToString())
    support = yukti.runner_class(backend).supports(model)
    if not support:
        assert support.by_design, f"{backend} refuses the hostile model: {support.describe()}"
        pytest.skip(f"{backend} refuses ONNX-only models by design: {support.describe()}")
    feeds = inputs_for(proto, batch=16)
    expected = yukti.runner("reference", model)(feeds)
    out = yukti.runner(backend, model)(feeds)
    assert out.shape == expected.shape
    if yukti.runner_class(backend).fixed_point:
        assert np.abs(out - expected).max() < 0.15
    else:
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert not (tmp_path / CANARY).exists()
