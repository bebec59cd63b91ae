"""Backend discovery: entry points, run-time registration, availability reasons, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import yukti
from yukti.model import Model


class _EchoRunner(yukti.Runner):
    name = "echo_test"
    default_options = {"scale": 1.0}

    def _prepare(self, model: Model, *, scale: float):
        self._scale = scale
        return {"artifact_bytes": 0}

    def _run(self, arrays):
        return [arrays[0][:, :5] * self._scale]


class _MissingRunner(yukti.Runner):
    name = "missing_test"

    @classmethod
    def available(cls):
        return False, "needs the imaginary package frobnicate"


@pytest.fixture
def registered():
    yukti.register("echo_test", _EchoRunner)
    yukti.register("missing_test", _MissingRunner)
    yield
    yukti.unregister("echo_test")
    yukti.unregister("missing_test")


def test_builtin_backends_are_registered():
    names = {info.name for info in yukti.backends()}
    assert {"reference", "onnxruntime", "torch"} <= names
    for info in yukti.backends():
        assert isinstance(info, yukti.BackendInfo)
        assert info.available or info.reason  # an unavailable backend always says why


def test_entry_points_point_at_runner_classes():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="yukti.runners")}
    assert eps["onnxruntime"] == "yukti.runners.ort:OnnxRuntimeRunner"
    assert yukti.runner_class("onnxruntime").__module__ == "yukti.runners.ort"


def test_unknown_backend_names_the_known_ones(jet_dnn):
    with pytest.raises(yukti.UnknownBackendError, match=r"unknown backend 'tensorrt'.*onnxruntime"):
        yukti.runner("tensorrt", jet_dnn)


def test_runtime_registration(registered, jet_dnn):
    assert "echo_test" in [b.name for b in yukti.backends()]
    run = yukti.runner("echo_test", jet_dnn, scale=2.0)
    x = jet_dnn.data.X[:3]
    np.testing.assert_array_equal(run(x), x[:, :5] * 2.0)
    assert run.info["options"] == {"scale": 2.0}


def test_duplicate_registration_refused(registered):
    with pytest.raises(yukti.YuktiError, match="already registered"):
        yukti.register("echo_test", _EchoRunner)
    with pytest.raises(yukti.YuktiError, match="already registered"):
        yukti.register("onnxruntime", _EchoRunner)


def test_unavailable_backend_gives_reason(registered, jet_dnn):
    info = next(b for b in yukti.backends() if b.name == "missing_test")
    assert not info.available and "frobnicate" in info.reason
    with pytest.raises(yukti.BackendUnavailableError, match="frobnicate"):
        yukti.runner("missing_test", jet_dnn)


def test_broken_plugin_is_reported_not_raised():
    yukti.register("broken_test", "no_such_module_xyz:Runner")
    try:
        info = next(b for b in yukti.backends() if b.name == "broken_test")
        assert not info.available and "failed to import" in info.reason
    finally:
        yukti.unregister("broken_test")


def test_import_yukti_imports_no_framework():
    code = "import sys, yukti; yukti.backends.__name__; print(sorted(m for m in ('torch','onnxruntime','tensorflow','hls4ml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
