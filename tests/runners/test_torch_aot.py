"""The torch_aot runner's own behaviour: the package cache across processes, batch bounds, export
failures, options. Agreement with the reference on every zoo model is in test_contract.py.

Each AOTInductor compile takes ~35 s here, so these tests reuse the packages the contract tests
build (same cache key) and compile one extra, tiny one, for non-default batch bounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import yukti
from zoo_variants import onnx_only

torch = pytest.importorskip("torch")
if not yukti.registry.backend_info("torch_aot").available:  # pragma: no cover - depends on the torch build
    pytest.skip(yukti.registry.backend_info("torch_aot").reason, allow_module_level=True)


@pytest.fixture(scope="module")
def aot_jet(jet_dnn):
    return yukti.runner("torch_aot", jet_dnn)


def test_info_describes_the_package(aot_jet, jet_dnn):
    info = aot_jet.info
    path = Path(info["artifact_path"])
    assert path.is_file() and path.name == "model.pt2"
    assert path.is_relative_to(yukti.cache.default_root())
    assert info["artifact_bytes"] == path.stat().st_size > 0
    assert info.build_s > 0 and info["compile_s"] == info.build_s  # compile_s: the older name, still readable
    assert isinstance(info["cache_hit"], bool)
    assert (info["min_batch"], info["max_batch"]) == (1, 65536)
    assert info["module_from"] == "original module"
    assert info["thread_safe"] is True


def test_package_is_reused_by_another_process(aot_jet, jet_dnn):
    """A second process with the same cache loads the package instead of compiling again."""
    path = Path(aot_jet.info["artifact_path"])
    mtime = path.stat().st_mtime_ns
    script = (
        "import json, sys, yukti\n"
        "m = yukti.zoo.get('jet_dnn')\n"
        "r = yukti.runner('torch_aot', m)\n"
        "out = r(m.data.X[:16])\n"
        "json.dump({k: r.info[k] for k in ('cache_hit', 'artifact_path', 'prepare_s', 'build_s')} | {'out': out.tolist()}, sys.stdout)\n"
    )
    # the child imports yukti (and with it yukti.runners) from where this process did
    roots = {str(Path(yukti.__file__).resolve().parents[1])}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*roots, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert child["cache_hit"] is True
    assert child["artifact_path"] == str(path)
    assert child["build_s"] == pytest.approx(aot_jet.info.build_s)  # the builder's seconds, from the manifest
    assert child["prepare_s"] < child["build_s"]  # this call loaded the package, it did not compile it
    assert path.stat().st_mtime_ns == mtime  # not rewritten
    np.testing.assert_array_equal(np.asarray(child["out"], np.float32), aot_jet(jet_dnn.data.X[:16]))


def test_batch_above_the_compiled_bound_is_refused(aot_jet, jet_dnn):
    x = np.resize(jet_dnn.data.X, (65537, 16))
    with pytest.raises(yukti.InputError, match=r"compiled for batch sizes 1\.\.65536; got 65537"):
        aot_jet(x)


def test_custom_bounds_are_compiled_and_enforced():
    tiny = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
    model = yukti.load(tiny, np.ones((2, 4), np.float32), name="tiny")
    run = yukti.runner("torch_aot", model, min_batch=2, max_batch=8)
    assert (run.info["min_batch"], run.info["max_batch"]) == (2, 8)
    x = np.random.default_rng(0).standard_normal((9, 4)).astype(np.float32)
    with torch.no_grad():
        expected = tiny(torch.from_numpy(x)).numpy()
    for batch in (2, 5, 8):
        np.testing.assert_allclose(run(x[:batch]), expected[:batch], rtol=0, atol=1e-6)
    for batch in (1, 9):
        with pytest.raises(yukti.InputError, match=rf"batch sizes 2\.\.8; got {batch}"):
            run(x[:batch])


@pytest.mark.parametrize(
    ("options", "message"),
    [({"min_batch": 0}, r"option min_batch must be an integer >= 1; got 0"),
     ({"min_batch": 10, "max_batch": 5}, r"min_batch <= max_batch; got min_batch=10, max_batch=5"),
     ({"max_batch": 2.5}, r"option max_batch must be an integer >= 1; got 2.5"),
     ({"device": "tpu"}, r"option device must be one of \['cpu', 'cuda'\]; got 'tpu'"),
     ({"source": "jax"}, r"option source must be one of \['auto', 'module', 'onnx'\]")],
)
def test_bad_options_are_refused_before_compiling(jet_dnn, options, message):
    with pytest.raises(ValueError, match=message):
        yukti.runner("torch_aot", jet_dnn, **options)


def test_export_failure_names_the_layer_and_keeps_torchs_message():
    class DataDependent(torch.nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # a branch on values: torch.export cannot trace it
                return x * 2
            return x

    net = torch.nn.Sequential(torch.nn.Linear(4, 4), DataDependent(), torch.nn.Linear(4, 2))
    model = yukti.load(net, np.ones((2, 4), np.float32), name="branchy")
    with pytest.raises(yukti.UnsupportedModelError, match=r"in layer 1 \(DataDependent\); torch says: \w+: .*data-dependent"):
        yukti.runner("torch_aot", model)


def test_batch_specialisation_is_an_export_error():
    class FixedBatch(torch.nn.Module):
        def forward(self, x):
            return x * torch.ones(2, 4)  # broadcasting pins the batch to 2

    model = yukti.load(FixedBatch(), np.ones((2, 4), np.float32), name="fixed_batch")
    with pytest.raises(yukti.UnsupportedModelError, match=r"(?s)batch sizes 1\.\.65536; torch says: .*specialized it to be a constant"):
        yukti.runner("torch_aot", model)


def test_onnx_conversion_path(jet_dnn):
    run = yukti.runner("torch_aot", onnx_only(jet_dnn))
    assert run.info["module_from"] == "onnx2torch"
    x = jet_dnn.data.X[:64]
    np.testing.assert_allclose(run(x), yukti.runner("reference", jet_dnn)(x), rtol=0, atol=1e-5)


def test_module_source_needs_a_module(jet_dnn):
    with pytest.raises(ValueError, match="has no torch module"):
        yukti.runner("torch_aot", onnx_only(jet_dnn), source="module")


def test_concurrent_calls_with_different_batch_sizes(aot_jet, jet_dnn):
    """One loaded package called from several threads at once, each with its own batch size."""
    x = jet_dnn.data.X
    sizes = (1, 7, 64, 300)
    expected = {b: aot_jet(x[:b]) for b in sizes}
    failures: list[str] = []

    def work(batch: int) -> None:
        for _ in range(30):
            out = aot_jet(x[:batch])
            if not np.array_equal(out, expected[batch]):
                failures.append(f"batch {batch}: max diff {np.abs(out - expected[batch]).max()}")

    # daemon threads and a join timeout: a deadlock (seen without the runner's lock) fails the
    # test instead of hanging the session
    threads = [threading.Thread(target=work, args=(b,), daemon=True) for b in sizes for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "concurrent calls did not finish: deadlock"
    assert not failures, failures[:5]


def test_threads_option_sets_torch_threads(jet_dnn):
    before = torch.get_num_threads()
    try:
        yukti.runner("torch_aot", jet_dnn, threads=2)  # same package as threads=1: a cache hit
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when no CUDA device exists")
def test_cuda_without_device_is_a_clear_error(jet_dnn):
    with pytest.raises(yukti.BackendUnavailableError, match="no CUDA device"):
        yukti.runner("torch_aot", jet_dnn, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")
def test_cuda_package_matches_reference(jet_dnn):
    where = next(jet_dnn.torch_module.parameters()).device
    run = yukti.runner("torch_aot", jet_dnn, device="cuda")
    assert run.info["target"]["gpu"]
    assert next(jet_dnn.torch_module.parameters()).device == where  # the user's module is not moved
    x = jet_dnn.data.X[:512]
    np.testing.assert_allclose(run(x), yukti.runner("reference", jet_dnn)(x), rtol=0, atol=1e-5)


# -- ONNX-only models: shape arithmetic folded before onnx2torch (runners/onnx_static_shapes.py) ---

def _agrees_with_onnxruntime(run, model, x) -> None:
    reference = yukti.runner("onnxruntime", model)
    for batch in (1, 7, 256):
        np.testing.assert_allclose(run(x[:batch]), reference(x[:batch]), rtol=0, atol=1e-5)


def _transformer_inputs() -> np.ndarray:
    x = np.random.default_rng(3).standard_normal((256, 16, 3)).astype(np.float32)
    x[:, -4:, :] = 0  # padded particles, masked in the attention
    return x


def test_converted_transformer_reads_no_shape_from_a_tensor_and_exports():
    """torch.export alone (no compile): the converted module has no onnx2torch module left that
    reads a shape, axes or bounds from a tensor, and traces with a dynamic batch."""
    from test_onnx_static_shapes import jet_transformer_onnx

    from yukti.runners import torch_aot, torch_common

    torch_common.import_onnx2torch()  # onnx2torch imports torchvision, which may not load here
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.slice import OnnxSlice
    from onnx2torch.node_converters.squeeze import OnnxSqueezeDynamicAxes
    from onnx2torch.node_converters.unsqueeze import OnnxUnsqueezeDynamicAxes

    model = yukti.load(jet_transformer_onnx(), name="jet_transformer_onnx")
    assert yukti.runner_class("torch_aot").supports(model)
    module = torch_common.module_on(model, torch_common.CONVERTED, "cpu")
    kinds = {type(m) for m in module.modules()}
    assert not kinds & {OnnxReshape, OnnxSlice, OnnxSqueezeDynamicAxes, OnnxUnsqueezeDynamicAxes}
    program = torch_aot._export(model, module, torch_common.CONVERTED, "cpu", 1, 65536)
    x = torch.from_numpy(_transformer_inputs()[:7])
    with torch.no_grad():
        np.testing.assert_allclose(program.module()(x).numpy(), yukti.runner("onnxruntime", model)(x.numpy()), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_onnx_only_transformer_compiles_and_agrees():
    from test_onnx_static_shapes import jet_transformer_onnx

    model = yukti.load(jet_transformer_onnx(), name="jet_transformer_onnx")
    run = yukti.runner("torch_aot", model)
    assert run.info["module_from"] == "onnx2torch"
    assert (run.info["min_batch"], run.info["max_batch"]) == (1, 65536)
    _agrees_with_onnxruntime(run, model, _transformer_inputs())


@pytest.mark.slow
def test_onnx_only_tf2onnx_conv1d_agrees(mdt_conv1d):
    # no torch module: the tf2onnx graph through onnx2torch (the same package the contract tests build)
    run = yukti.runner("torch_aot", mdt_conv1d)
    assert run.info["module_from"] == "onnx2torch"
    _agrees_with_onnxruntime(run, mdt_conv1d, mdt_conv1d.data.X[:256])


def test_shape_computed_from_the_batch_is_refused_naming_the_node():
    from test_onnx_static_shapes import batch_squared_onnx

    model = yukti.load(batch_squared_onnx(), name="batch_squared")
    support = yukti.runner_class("torch_aot").supports(model)
    assert not support and support.by_design
    assert support.unsupported == (("Reshape", "flatten_by_batch"),)
    assert "input 'target' of Reshape node 'flatten_by_batch'" in support.reason
    assert "torch.export cannot trace" in support.reason
    assert yukti.runner_class("torch").supports(model)  # eager torch reads it at run time, fine
