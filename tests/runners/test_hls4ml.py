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
    from runners.hls4ml_emu import _convert

    x = np.ascontiguousarray(np.concatenate([jet_dnn.data.X] * 2)[:20_000])
    options = {k: v for k, v in jet_runner.options.items() if k != "threads"}
    hls_model = _convert(jet_dnn, "torch", options, tmp_path / "prj")
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
    from runners.hls4ml_emu import EmulationMismatchError

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

    from runners.hls4ml_emu import _convert

    options = {k: v for k, v in yukti.runner_class("hls4ml").default_options.items() if k != "threads"}
    hostile = 'fc\n} int pwn = system("touch PWNED"); int x = 0;'
    module = torch.nn.Sequential()
    module.add_module(hostile, torch.nn.Linear(4, 3))
    converted = _convert(yukti.load(module, torch.zeros(1, 4)), "torch", options, tmp_path / "torch")
    assert all(name.isidentifier() for layer in converted.get_layers() for name in (layer.name, *layer.outputs))
    keras = pytest.importorskip("keras", reason="TensorFlow/Keras is not installed here")
    inputs = keras.Input((4,), name="x")
    keras_model = keras.Model(inputs, keras.layers.Dense(3, name=hostile)(inputs))
    with pytest.raises(yukti.errors.UnsupportedModelError, match="not C identifiers"):
        _convert(yukti.load(keras_model), "keras", options, tmp_path / "keras")
    assert not any((tmp_path / "keras").rglob("*.cpp"))
