"""hls4ml emulation backend: batching, caching, self-check, refusals, Keras path, MAGIC physics.

Every compile costs 15-60 s on these machines; each configuration here is built once per session
through the artifact cache (YUKTI_TEST_CACHE keeps them between runs).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import yukti
from yukti import datasets, metrics

pytestmark = pytest.mark.filterwarnings("ignore")


def _require() -> None:
    info = yukti.registry.backend_info("hls4ml")
    if not info.available:
        pytest.skip(f"hls4ml backend unavailable: {info.reason}")


@pytest.fixture(scope="module")
def jet_runner(jet_dnn):
    _require()
    return yukti.runner("hls4ml", jet_dnn)


def test_batched_equals_hls4ml_predict(jet_runner, jet_dnn, tmp_path):
    """The C++ batch loop gives exactly what hls4ml's own predict() gives sample by sample."""
    from yukti.runners.hls4ml.build import convert
    from yukti.runners.hls4ml.frontend import frontend_for

    x = np.ascontiguousarray(np.concatenate([jet_dnn.data.X] * 2)[:20_000])
    options = {k: v for k, v in jet_runner.options.items() if k != "threads"}
    hls_model = convert(jet_dnn, frontend_for("torch"), options, tmp_path / "prj")
    # hls4ml's predict() over the library the runner loaded (the same firmware, no second compile)
    hls_model._top_function_lib = ctypes.cdll.LoadLibrary(jet_runner.info["library"])
    started = time.perf_counter()
    expected = hls_model.predict(x)
    predict_s = time.perf_counter() - started
    started = time.perf_counter()
    got = jet_runner(x)
    batched_s = time.perf_counter() - started
    np.testing.assert_array_equal(got, expected)
    # chunks on two threads (the same cached library: threads is not part of the artifact)
    threaded = yukti.runner("hls4ml", jet_dnn, threads=2)
    assert threaded.info["artifact_path"] == jet_runner.info["artifact_path"]
    started = time.perf_counter()
    got_threaded = threaded(x)
    threaded_s = time.perf_counter() - started
    np.testing.assert_array_equal(got_threaded, expected)
    print(f"\n20k samples: hls4ml predict() {predict_s:.3f} s, batched {batched_s:.4f} s ({predict_s / batched_s:.1f}x), "
          f"batched on 2 threads {threaded_s:.4f} s ({predict_s / threaded_s:.1f}x)")


def test_info_lists_layer_precisions(jet_runner):
    info = jet_runner.info
    layers = info["layer_precisions"]
    dense = [v for v in layers.values() if v["class"] == "Dense"]
    assert len(dense) == 4  # 16-64-32-32-5
    assert all(d["weight"].startswith("fixed<16,6") for d in dense)
    for key in ("reuse_factor", "strategy", "io_type", "compile_s", "artifact_bytes", "library_bytes"):
        assert key in info, key
    assert info["artifact_bytes"] > info["library_bytes"] > 0
    assert info["self_check"]["argmax_agreement"] >= 0.9


def test_second_process_hits_the_cache(jet_runner, jet_dnn):
    code = ("import yukti; r = yukti.runner('hls4ml', yukti.zoo.get('jet_dnn')); "
            "print(r.info['cache_hit'], r.info['artifact_path'])")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    hit, path = out.stdout.strip().splitlines()[-1].split()
    assert hit == "True" and path == jet_runner.info["artifact_path"]


def test_softmax_saturation_keeps_confident_outputs(jet_runner, jet_dnn):
    """hls4ml's stable softmax wraps x_max - x beyond 32 by default; with the saturating type the
    emulation stays within the contract's bound of the float model."""
    import torch

    x = jet_dnn.data.X[:5000]
    with torch.inference_mode():
        ref = jet_dnn.torch_module(torch.from_numpy(x)).numpy()
    assert np.abs(jet_runner(x) - ref).max() <= 0.15


def test_self_check_names_the_departing_layer(jet_dnn):
    """granularity='name' lets hls4ml infer per-layer types and gives one constant output here;
    prepare must refuse with the first layer whose trace departs from the float activations."""
    _require()
    from yukti.runners.hls4ml.diagnose import EmulationMismatchError

    with pytest.raises(EmulationMismatchError, match=r"first layer that departs .* '_\d+' \(\w+\)") as err:
        yukti.runner("hls4ml", jet_dnn, granularity="name")
    print("\n" + str(err.value))


def test_refuses_over_size_model_by_design(cluster_cnn):
    _require()
    support = yukti.runner_class("hls4ml").supports(cluster_cnn)
    assert not support and support.by_design
    assert "8192 weights" in support.reason and "4096" in support.reason


def test_refuses_unsupported_layer_naming_it():
    _require()
    torch = pytest.importorskip("torch")

    class Odd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)
            self.odd = torch.nn.Hardswish()

        def forward(self, x):
            return self.odd(self.fc(x))

    model = yukti.load(Odd(), torch.zeros(1, 4))
    support = yukti.runner_class("hls4ml").supports(model)
    assert not support and not support.by_design
    assert ("Hardswish", "odd") in support.unsupported
    with pytest.raises(yukti.UnsupportedModelError, match="Hardswish"):
        yukti.runner("hls4ml", model)


@pytest.mark.parametrize("options, expected", [
    ({"precision": "float"}, "ap_fixed<16,6>"),
    ({"strategy": "fast"}, "Latency"),
    ({"io_type": "serial"}, "io_parallel"),
    ({"reuse_factor": 0}, ">= 1"),
    ({"layer_precision": {"_0": "16 bits"}}, "layer_precision"),
    ({"source": "keras"}, "no keras form"),
])
def test_bad_options_named(jet_dnn, options, expected):
    _require()
    with pytest.raises(ValueError, match=expected.replace("<", ".").replace(">", ".")):
        yukti.runner("hls4ml", jet_dnn, **options)


def test_keras_path():
    """A small Keras MLP through convert_from_keras_model agrees with Keras itself."""
    _require()
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    net = keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(16, activation="relu", name="fc1"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])
    model = yukti.load(net, name="tiny_keras")
    runner = yukti.runner("hls4ml", model)
    assert runner.info["source"] == "keras"
    assert "fc1" in runner.info["layer_precisions"]
    x = np.random.default_rng(1).standard_normal((500, 6)).astype(np.float32)
    ref = np.asarray(net(x))
    out = runner(x)
    assert np.mean(out.argmax(1) == ref.argmax(1)) >= 0.95
    assert np.abs(out - ref).max() <= 0.05


def test_layer_precision_override_applies(jet_dnn):
    _require()
    runner = yukti.runner("hls4ml", jet_dnn, layer_precision={"_0": "ap_fixed<12,5>"})
    layers = runner.info["layer_precisions"]
    assert layers["_0"]["weight"].startswith("fixed<12,5") and layers["_2"]["weight"].startswith("fixed<16,6")
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['nope'\]"):
        yukti.runner("hls4ml", jet_dnn, layer_precision={"nope": "ap_fixed<8,3>"})


def _train_magic_dnn(train: datasets.Dataset):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Linear(10, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
            torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2), torch.nn.Softmax(dim=1))
        optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
        X, y = torch.from_numpy(train.X), torch.from_numpy(train.y)
        for _ in range(15):
            order = torch.randperm(len(X), generator=generator)
            for start in range(0, len(X), 256):
                index = order[start:start + 256]
                optimiser.zero_grad()
                loss = torch.nn.functional.nll_loss(torch.log(net(X[index]).clamp_min(1e-12)), y[index])
                loss.backward()
                optimiser.step()
        return net.eval()
    finally:
        torch.set_num_threads(threads)


def test_magic_fixed_point_physics():
    """A jet-style DNN trained on MAGIC keeps >= 99% argmax agreement through ap_fixed<16,6>;
    the AUCs of float and fixed point are printed side by side."""
    _require()
    import torch

    try:
        data = datasets.magic()
    except yukti.YuktiError as exc:
        pytest.skip(f"MAGIC data absent: {exc}")
    train, test = data.split(test_fraction=0.25, seed=0)
    mean, std = train.X.mean(axis=0), train.X.std(axis=0) + 1e-6
    train.X, test.X = (train.X - mean) / std, (test.X - mean) / std
    started = time.perf_counter()
    net = _train_magic_dnn(train)
    train_s = time.perf_counter() - started
    model = yukti.load(net, torch.from_numpy(test.X[:1]), name="magic_dnn")
    model.data = test
    runner = yukti.runner("hls4ml", model, precision="ap_fixed<16,6>")
    with torch.inference_mode():
        ref = net(torch.from_numpy(test.X)).numpy()
    out = runner(test.X)
    fid = metrics.fidelity(out, ref)
    float_phys = metrics.physics(ref, test.y, test.signal_class)
    fixed_phys = metrics.physics(out, test.y, test.signal_class)
    print(f"\nMAGIC ({len(test)} test events, trained in {train_s:.1f} s): argmax agreement {fid['argmax_agreement']:.4f}, "
          f"max abs {fid['max_abs_diff']:.4f}; AUC float {float_phys['auc']:.4f} vs ap_fixed<16,6> {fixed_phys['auc']:.4f}; "
          f"eff@1% bkg {float_phys['eff_at_bkg_1pct']:.4f} vs {fixed_phys['eff_at_bkg_1pct']:.4f}; "
          f"compile {runner.info['compile_s']:.1f} s")
    assert float_phys["auc"] > 0.85  # the float net learned something, or the comparison means nothing
    assert fid["argmax_agreement"] >= 0.99



def test_layer_names_that_are_not_identifiers_never_reach_hls4ml_code(tmp_path):
    """hls4ml writes layer names into C++ as they are. ONNX names are sanitized first; hls4ml's torch
    frontend derives its own; a Keras model's names are checked and refused (Keras accepts a newline
    in a layer name), never written."""
    _require()
    import torch

    from yukti.runners.hls4ml.build import convert
    from yukti.runners.hls4ml.frontend import frontend_for

    options = {k: v for k, v in yukti.runner_class("hls4ml").default_options.items() if k != "threads"}
    hostile = 'fc\n} int pwn = system("touch PWNED"); int x = 0;'
    module = torch.nn.Sequential()
    module.add_module(hostile, torch.nn.Linear(4, 3))
    converted = convert(yukti.load(module, torch.zeros(1, 4)), frontend_for("torch"), options, tmp_path / "torch")
    assert all(name.isidentifier() for layer in converted.get_layers() for name in (layer.name, *layer.outputs))
    keras = pytest.importorskip("keras", reason="TensorFlow/Keras is not installed here")
    inputs = keras.Input((4,), name="x")
    keras_model = keras.Model(inputs, keras.layers.Dense(3, name=hostile)(inputs))
    with pytest.raises(yukti.errors.UnsupportedModelError, match="not C identifiers"):
        convert(yukti.load(keras_model), frontend_for("keras"), options, tmp_path / "keras")
    assert not any((tmp_path / "keras").rglob("*.cpp"))


def test_cleaned_onnx_is_shared_by_content_and_keeps_no_model_alive(jet_dnn, tmp_path):
    """supports(), prepare() and a diagnosis all read qonnx's clean-up of the ONNX form: done once per
    model content (two loads of one file share it), in a bounded cache that holds no model."""
    import gc
    import weakref

    pytest.importorskip("qonnx")
    from yukti.runners.hls4ml.onnx import CLEANED_KEPT, _cleaned_by_content, cleaned

    path = jet_dnn.save(tmp_path / "jet.onnx")
    first, second = yukti.load(path), yukti.load(path)
    assert cleaned(first) is cleaned(second)
    assert all(node.name.isidentifier() for node in cleaned(first).graph.node)  # sanitized before qonnx
    assert _cleaned_by_content.cache_info().maxsize == CLEANED_KEPT
    alive = weakref.ref(first)
    del first, second
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize("case", ["agrees", "constant", "argmax"])
def test_self_check_judges_each_output(case):
    """The one place the self-check decides what agreement means: a constant output and a
    disagreeing argmax are problems naming the output; a close one is not."""
    from yukti.runners.hls4ml.diagnose import _judge_output
    from yukti.metrics import CHECK_LIMITS

    ref = np.random.default_rng(0).dirichlet(np.ones(5), size=400).astype(np.float32)
    fixed_point_row = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625], np.float32)  # as ap_fixed writes them
    out = {"agrees": ref + 0.001, "constant": np.tile(fixed_point_row, (400, 1)), "argmax": ref[:, ::-1].copy()}[case]
    measured, problem = _judge_output(out, ref, 1, "classification")
    assert {"argmax_agreement", "max_abs_diff"} <= set(measured)
    if case == "agrees":
        assert problem is None and measured["argmax_agreement"] == 1.0
    else:
        assert problem.startswith("output 1: ")
        assert ("same for every sample" in problem) == (case == "constant")
        assert measured["argmax_agreement"] < CHECK_LIMITS["classification"]["argmax_agreement"]


def test_self_check_judges_regression_outputs_by_their_error_not_argmax():
    """An autoencoder's reconstruction: argmax agreement would be meaningless (and low), the relative
    error is what counts; a constant or wildly wrong reconstruction is still a problem."""
    from yukti.runners.hls4ml.diagnose import _judge_output

    rng = np.random.default_rng(1)
    ref = rng.standard_normal((400, 76)).astype(np.float32)
    close = ref + rng.standard_normal(ref.shape).astype(np.float32) * 0.05  # argmax flips often, error is small
    assert np.mean(close.argmax(1) == ref.argmax(1)) < 0.95
    measured, problem = _judge_output(close, ref, 0, "regression")
    assert problem is None and measured["mean_rel_error"] < 0.08
    _, problem = _judge_output(ref * 3, ref, 0, "regression")
    assert problem is not None and "relative error" in problem.lower()
    _, problem = _judge_output(np.zeros_like(ref), ref, 0, "regression")
    assert "same for every sample" in problem


def test_keras_float_activations_match_hls4ml_layer_names(tmp_path):
    """The diagnosis compares each hls4ml layer with its float activation: for Keras, a Dense with a
    fused activation is two hls4ml layers (before and after the activation), both found, computed
    without changing the user's model (and without hls4ml's profiling module, which needs matplotlib)."""
    _require()
    keras = pytest.importorskip("keras")
    from yukti.runners.hls4ml.build import convert
    from yukti.runners.hls4ml.frontend import frontend_for

    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="fc1"),
                            keras.layers.Dense(3, activation="softmax", name="out")])
    model = yukti.load(net, name="tiny_keras_trace")
    options = {k: v for k, v in yukti.runner_class("hls4ml").default_options.items() if k != "threads"}
    frontend = frontend_for("keras")
    hls_model = convert(model, frontend, options, tmp_path / "prj")
    x = np.random.default_rng(0).standard_normal((50, 6)).astype(np.float32)
    floats = frontend.float_activations(model, hls_model, x)
    hls_names = {layer.name for layer in hls_model.get_layers() if layer.class_name != "Input"}
    assert set(floats) == hls_names == {"fc1", "fc1_relu", "out", "out_softmax"}  # Keras numbers its input layer's name
    kernel, bias = net.get_layer("fc1").get_weights()
    np.testing.assert_allclose(floats["fc1"], x @ kernel + bias, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(floats["fc1_relu"], np.maximum(x @ kernel + bias, 0), rtol=1e-5, atol=1e-5)
    out_kernel, out_bias = net.get_layer("out").get_weights()
    np.testing.assert_allclose(floats["out"], floats["fc1_relu"] @ out_kernel + out_bias, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(floats["out_softmax"], np.asarray(net(x)), rtol=1e-5, atol=1e-6)
    assert [layer.activation.__name__ for layer in net.layers] == ["relu", "softmax"]  # the model is unchanged


@pytest.mark.slow
def test_dense_autoencoder_runs_with_regression_metrics():
    """A dense autoencoder (77-32-32-32-76, the anomaly-detection seed model's shape) was refused by the
    classifier-only self-check ("argmax agreement 0.881 < 0.9"); it is now checked, and benchmarked, by
    the error of its reconstruction."""
    _require()
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(77, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 76)).eval()
    model = yukti.load(net, torch.zeros(1, 77), name="dense_autoencoder")
    assert metrics.infer_task(model) == "regression"  # 77 in, 76 out: not shaped like its input
    runner = yukti.runner("hls4ml", model)
    check = runner.info["self_check"]
    assert check["task"] == "regression" and check["mean_rel_error"] < metrics.CHECK_LIMITS["regression"]["mean_rel_error"]
    frame = yukti.benchmark(model, backends=["hls4ml", "onnxruntime"], batch_sizes=(1,), store=False,
                            policy=yukti.engine.TimingPolicy(time_budget_s=0.05, min_calls=5), max_eval_samples=512)
    rows = frame.set_index("backend")
    assert (rows["status"] == "ok").all(), rows["error"].tolist()
    assert (rows["task"] == "regression").all()
    assert rows.loc["hls4ml", "mean_rel_error"] < 0.1 and rows.loc["onnxruntime", "mean_rel_error"] < 1e-5
    assert rows.loc["hls4ml", "resolution"] > rows.loc["onnxruntime", "resolution"]


def test_torch_reductions_hls4ml_cannot_convert_are_refused_up_front(isolated_yukti_dirs):
    """A sum over the particles has no converter in hls4ml's torch frontend (torch.sum) nor its ONNX
    one (ReduceSum): refused before any conversion, naming both. (A mean goes through the module's
    ONNX form instead: tests/runners/test_hls4ml_deepsets.py.)"""
    torch = pytest.importorskip("torch")
    import yukti

    class DeepSets(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.phi, self.rho = torch.nn.Linear(3, 8), torch.nn.Linear(8, 5)

        def forward(self, x):
            return torch.softmax(self.rho(torch.relu(self.phi(x)).sum(dim=1)), dim=1)

    torch.manual_seed(0)
    model = yukti.load(DeepSets().eval(), torch.zeros(1, 16, 3), name="deepsets_sum")
    for backend in ("hls4ml", "fixed"):
        support = yukti.runner_class(backend).supports(model)
        assert not support and "torch.sum" in support.describe(), (backend, support.describe())
        assert "ReduceSum" in support.reason and not support.by_design, (backend, support.describe())


def test_conversions_in_threads_leave_torch_and_stdout_as_they_were(jet_dnn, tmp_path):
    """A precision scan converts its configurations in a thread pool. hls4ml's torch converter traces
    with torch.fx, which patches torch process-wide, and its output is kept by swapping sys.stdout:
    interleaved, traces failed ("Proxy object cannot be iterated") and left torch patched, so later
    torch calls in the process failed. Conversions hold one lock (frontend.HLS4ML_LOCK)."""
    _require()
    import threading

    import torch

    from yukti.runners.hls4ml import build, frontend

    call, stdout = torch.nn.Module.__call__, sys.stdout
    options = yukti.runner_class("hls4ml").resolve_options({"source": "torch"})
    torch_frontend = frontend.frontend_for("torch")
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def convert(i: int) -> None:
        start.wait()
        try:
            for _ in range(2):
                build.convert(jet_dnn, torch_frontend, options, tmp_path / f"prj{i}")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=convert, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert torch.nn.Module.__call__ is call and sys.stdout is stdout
    assert jet_dnn.torch_module(torch.zeros(2, 16)).shape == (2, 5)  # torch as it was
