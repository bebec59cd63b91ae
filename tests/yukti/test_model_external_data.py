"""ONNX external data (weights in a side file): read from the model file's folder whatever the cwd,
inlined into the canonical bytes (so into the model hash and every cache key), and never from
outside that folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti
from yukti.errors import ModelLoadError


def _save(folder: Path, weights: np.ndarray, *, location: str = "weights.data") -> Path:
    """model.onnx (the graph: identical bytes for any weights of this shape) + its external data file."""
    folder.mkdir(parents=True, exist_ok=True)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="matmul")], "linear",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(weights, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save_model(model, folder / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=0)
    return folder / "model.onnx"


def _weights(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((4, 3)).astype(np.float32)


def _set_location(path: Path, location: str, **fields: int) -> None:
    proto = onnx.load(path, load_external_data=False)
    tensor = proto.graph.initializer[0]
    kept = [(e.key, e.value) for e in tensor.external_data if e.key not in {"location", "offset", "length"}]
    del tensor.external_data[:]
    for key, value in [("location", location), *kept, *fields.items()]:
        tensor.external_data.add(key=key, value=str(value))
    onnx.save(proto, path)


@pytest.fixture()
def twins(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    w_a, w_b = _weights(1), _weights(2)
    a, b = _save(tmp_path / "a", w_a), _save(tmp_path / "b", w_b)
    assert a.read_bytes() == b.read_bytes()  # the same graph file; only the .data files differ
    return a, b, w_a, w_b


def test_external_weights_are_inlined_and_hashed(twins):
    a, b, w_a, w_b = twins
    model_a, model_b = yukti.load(a), yukti.load(b)
    assert model_a.hash != model_b.hash
    for model, weights in ((model_a, w_a), (model_b, w_b)):
        (init,) = onnx.load_from_string(model.onnx_bytes).graph.initializer
        assert init.data_location == TensorProto.DEFAULT and not init.external_data
        np.testing.assert_array_equal(numpy_helper.to_array(init), weights)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(yukti.runner("onnxruntime", model_a)(x), x @ w_a, rtol=1e-5)


def test_loads_from_another_working_directory(twins, tmp_path, monkeypatch):
    a, _, w_a, _ = twins
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    x = np.ones((2, 4), np.float32)
    for path in (a, os.path.relpath(a, elsewhere)):
        model = yukti.load(path)
        np.testing.assert_allclose(yukti.runner("onnxruntime", model)(x), x @ w_a, rtol=1e-5)


@pytest.mark.skipif(not yukti.registry.backend_info("cpp").available, reason="no C++ compiler")
def test_cpp_builds_one_artifact_per_data_file(twins):
    a, b, w_a, w_b = twins
    x = np.random.default_rng(3).standard_normal((7, 4)).astype(np.float32)
    run_a, run_b = yukti.runner("cpp", yukti.load(a)), yukti.runner("cpp", yukti.load(b))
    assert run_a.info["artifact_path"] != run_b.info["artifact_path"]
    np.testing.assert_allclose(run_a(x), x @ w_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run_b(x), x @ w_b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_torch_aot_builds_one_package_per_data_file(twins, tmp_path, monkeypatch):
    if not yukti.registry.backend_info("torch_aot").available:
        pytest.skip(yukti.registry.backend_info("torch_aot").reason)
    # an empty cache: a persistent YUKTI_TEST_CACHE may hold b's package from an earlier run
    monkeypatch.setenv("YUKTI_CACHE_DIR", str(tmp_path / "cache"))
    a, b, w_a, w_b = twins
    x = np.random.default_rng(4).standard_normal((7, 4)).astype(np.float32)
    run_a = yukti.runner("torch_aot", yukti.load(a), max_batch=64)
    run_b = yukti.runner("torch_aot", yukti.load(b), max_batch=64)
    assert run_b.info["cache_hit"] is False  # no stale hit on a's package
    assert run_a.info["artifact_path"] != run_b.info["artifact_path"]
    np.testing.assert_allclose(run_a(x), x @ w_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run_b(x), x @ w_b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("location", ["../b/weights.data", "/etc/passwd", "sub/../../b/weights.data", "..\\b\\weights.data"])
def test_locations_outside_the_model_folder_are_refused(twins, location):
    a, _, _, _ = twins
    _set_location(a, location)
    with pytest.raises(ModelLoadError, match=r"tensor 'W' stores its data at " + re.escape(repr(location))):
        yukti.load(a)


def test_symlink_pointing_outside_is_refused(twins):
    a, b, _, _ = twins
    (a.parent / "link.data").symlink_to(b.parent / "weights.data")
    _set_location(a, "link.data")
    with pytest.raises(ModelLoadError, match=r"tensor 'W'.*'link\.data'.*outside the model's folder"):
        yukti.load(a)
    (a.parent / "inside.data").symlink_to(a.parent / "weights.data")  # a link within the folder is fine
    _set_location(a, "inside.data")
    assert yukti.load(a).hash


def test_missing_or_short_data_files_are_named(twins):
    a, _, _, _ = twins
    _set_location(a, "absent.data")
    with pytest.raises(ModelLoadError, match=r"tensor 'W'.*'absent\.data'.*no such file"):
        yukti.load(a)
    _set_location(a, "weights.data", offset=40, length=48)
    with pytest.raises(ModelLoadError, match=r"tensor 'W'.*past the end of the 48-byte file"):
        yukti.load(a)
    _set_location(a, "weights.data", offset=8)
    with pytest.raises(ModelLoadError, match=r"tensor 'W'.*40 bytes, where its shape \[4, 3\] needs 48"):
        yukti.load(a)


def test_external_references_without_a_folder_are_refused(twins):
    a, _, _, _ = twins
    unresolved = onnx.load(a, load_external_data=False)
    for source in (unresolved, unresolved.SerializeToString()):
        with pytest.raises(ModelLoadError, match=r"tensor 'W'.*external data.*'weights\.data'.*yukti\.load\('path/model\.onnx'\)"):
            yukti.load(source)
    assert yukti.load(onnx.load(a)).hash == yukti.load(a).hash  # onnx.load reads the data in: the same model


def test_over_two_gigabytes_is_refused_before_reading(tmp_path):
    path = _save(tmp_path / "big", _weights(0))
    proto = onnx.load(path, load_external_data=False)
    init = proto.graph.initializer[0]
    del init.dims[:]
    init.dims.extend([(1 << 27) + 1, 4])  # 2 GiB + 16 bytes of float32
    onnx.save(proto, path)
    size = ((1 << 27) + 1) * 16
    _set_location(path, "weights.data", offset=0, length=size)
    with open(path.parent / "weights.data", "r+b") as handle:
        handle.truncate(size)  # sparse: no disk space used
    with pytest.raises(ModelLoadError, match="protobuf's limit"):
        yukti.load(path)
