"""The Runner contract, checked for every registered backend on every zoo model.

Parametrized from the registry itself: a backend registered through the `yukti.runners` entry
points is tested here the moment it registers, with no change to this file.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import yukti
from yukti.runner import RunnerInfo
from zoo_variants import ZOO_VARIANTS
from yukti import metrics, zoo
from yukti.options import OptionError

BACKENDS = yukti.registry.names()
# Tolerances of the issue: dense nets to 1e-5, convolutions to 1e-4, against the reference (relative
# where an output exceeds 1 in magnitude).
TOLERANCE = {"jet_dnn": 1e-5, "cluster_cnn": 1e-4, "jet_dnn_keras": 1e-5, "jet_dnn_onnx": 1e-5, "cluster_cnn_onnx": 1e-4,
             "mdt_conv1d": 1e-4, "jet_deepsets": 1e-5, "jet_deepsets_keras": 1e-5, "jet_transformer": 1e-5,
             "jet_transformer_onnx": 1e-5, "fad_autoencoder": 1e-5, "jet_fusion": 1e-5}
assert set(TOLERANCE) == set(ZOO_VARIANTS) and set(zoo.names()) <= set(ZOO_VARIANTS), "a new zoo model needs a tolerance here"


# Fixed-point backends (hls4ml emulation, ap_fixed<16,6> by default) on softmax outputs in [0, 1].
FIXED_POINT_MIN_AGREEMENT = 0.95
FIXED_POINT_MAX_ABS = 0.15


def _require(backend: str) -> None:
    info = yukti.registry.backend_info(backend)
    if not info.available:
        pytest.skip(f"backend {backend!r} is not available here: {info.reason}")


def _take(model: yukti.Model, index: slice | np.ndarray) -> np.ndarray | list[np.ndarray]:
    """Samples `index` of the model's evaluation data: one array, or one per input of a multi-input model."""
    arrays = model.data.inputs or (model.data.X,)
    return [a[index] for a in arrays] if len(arrays) > 1 else arrays[0][index]


def _options(backend: str, model: yukti.Model) -> dict:
    """The backend's defaults, except a fixed-point backend on a model that declares its firmware's
    fixed-point settings (yukti.zoo: a DeepSets' mean needs saturation)."""
    return dict(model.meta.get("fixed_point", {})) if yukti.runner_class(backend).fixed_point else {}


@pytest.fixture(scope="module")
def prepared(zoo_models):
    """One prepared runner per (backend, zoo model), built on first use."""
    cache: dict[tuple[str, str], yukti.Runner] = {}

    def get(backend: str, model_name: str) -> yukti.Runner:
        _require(backend)
        model = zoo_models[model_name]
        support = yukti.runner_class(backend).supports(model)
        if not support:
            if support.by_design:
                pytest.skip(f"{backend} refuses zoo model {model_name} by design: {support.describe()}")
            pytest.fail(f"{backend} refuses zoo model {model_name}: {support.describe()}")
        if (backend, model_name) not in cache:
            cache[(backend, model_name)] = yukti.runner(backend, model, **_options(backend, model))
        return cache[(backend, model_name)]

    return get


@pytest.fixture(scope="module")
def reference_outputs(zoo_models):
    return {name: yukti.runner("reference", m)(_take(m, slice(256))) for name, m in zoo_models.items()}


@pytest.mark.parametrize("model_name", ZOO_VARIANTS)
@pytest.mark.parametrize("backend", BACKENDS)
class TestContract:
    def test_matches_reference(self, backend, model_name, prepared, zoo_models, reference_outputs):
        model = zoo_models[model_name]
        out = prepared(backend, model_name)(_take(model, slice(256)))
        ref = reference_outputs[model_name]
        assert isinstance(out, np.ndarray)
        assert out.shape == ref.shape == (256, *model.outputs[0].shape[1:])
        assert out.dtype == np.float32
        if yukti.runner_class(backend).fixed_point and metrics.infer_task(model) != "classification":
            # an autoencoder in fixed point: its outputs must still be the same function (task_check's limits)
            _, problems = metrics.task_check(out, ref, metrics.infer_task(model),
                                             inputs=metrics.reconstruction_target(model, model.data.X[:256]))
            assert not problems, problems
        elif yukti.runner_class(backend).fixed_point:
            # fixed-point emulation: the physics answer must survive, the digits need not
            agreement = float(np.mean(out.argmax(axis=1) == ref.argmax(axis=1)))
            assert agreement >= FIXED_POINT_MIN_AGREEMENT, f"argmax agreement {agreement:.3f}"
            assert np.abs(out - ref).max() <= FIXED_POINT_MAX_ABS
        else:
            # relative to outputs beyond 1 in magnitude (an autoencoder's reconstruction reaches tens)
            assert (np.abs(out - ref) / np.maximum(np.abs(ref), 1)).max() <= TOLERANCE[model_name]

    def test_batch_sizes_agree(self, backend, model_name, prepared, zoo_models):
        model = zoo_models[model_name]
        runner = prepared(backend, model_name)
        big = runner(_take(model, np.arange(1024) % len(model.data)))
        for batch in (1, 3, 64):
            expected = big[:batch]
            assert (np.abs(runner(_take(model, slice(batch))) - expected) / np.maximum(np.abs(expected), 1)).max() <= TOLERANCE[model_name]

    def test_info(self, backend, model_name, prepared, zoo_models):
        runner = prepared(backend, model_name)
        info = runner.info
        assert isinstance(info, RunnerInfo)
        for key in ("backend", "version", "options", "prepare_s", "artifact_bytes", "thread_safe", "model_hash"):
            assert key in info, key
        assert info["backend"] == backend
        assert info["model_hash"] == zoo_models[model_name].hash
        # the options recorded are the reuse key the engine and the chooser compute, and what the runner uses
        assert info.options == runner.options == yukti.runner_class(backend).resolve_options(
            _options(backend, zoo_models[model_name]))
        assert info.extra.keys().isdisjoint(f.name for f in dataclasses.fields(RunnerInfo))
        if info.cache_hit is not None:  # a cached artifact: where it is, how big, how long it took to build
            assert info.build_s is not None and info.build_s > 0
            path = Path(info.artifact_path)
            assert path.exists() and info.artifact_bytes > 0
            if path.is_file():
                assert info.artifact_bytes == path.stat().st_size

    def test_concurrent_calls(self, backend, model_name, prepared, zoo_models):
        runner = prepared(backend, model_name)
        if not runner.info["thread_safe"]:
            pytest.skip(f"{backend} declares itself not thread-safe in info")
        x = _take(zoo_models[model_name], slice(32))
        expected = runner(x)
        failures: list[str] = []

        def work() -> None:
            for _ in range(20):
                if not np.array_equal(runner(x), expected):
                    failures.append("different output under concurrency")

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures


@pytest.mark.parametrize("backend", BACKENDS)
class TestBadInput:
    """Every backend rejects malformed input with InputError before it reaches native code."""

    @pytest.fixture
    def run(self, backend, prepared, zoo_models):
        # the jet tagger in whichever form the backend takes (a Keras-only backend takes the Keras twin)
        _require(backend)
        for name in sorted((n for n in zoo_models if n.startswith("jet_dnn")), key=lambda n: n != "jet_dnn"):
            if yukti.runner_class(backend).supports(zoo_models[name]):
                return prepared(backend, name)
        pytest.fail(f"{backend} supports no form of the jet tagger")

    @pytest.fixture
    def x(self, jet_dnn):
        return jet_dnn.data.X[:8].copy()

    def test_wrong_feature_count(self, run, x):
        with pytest.raises(yukti.InputError, match=r"expects size 16 on axis 1"):
            run(x[:, :15])

    def test_single_sample_without_batch_axis(self, run, x):
        with pytest.raises(yukti.InputError, match=r"x\[None\]"):
            run(x[0])

    def test_empty_batch(self, run, x):
        with pytest.raises(yukti.InputError, match="empty batch"):
            run(x[:0])

    def test_nan_and_inf(self, run, x):
        for bad in (np.nan, np.inf):
            x_bad = x.copy()
            x_bad[2, 5] = bad
            with pytest.raises(yukti.InputError, match=r"non-finite .* index \(2, 5\)"):
                run(x_bad)

    def test_lossy_dtype_refused(self, run, x):
        with pytest.raises(yukti.InputError, match="expects dtype float32"):
            run(x.astype(np.float64) + 1e-12)

    def test_lossless_dtype_converted(self, run, x):
        np.testing.assert_array_equal(run(x.astype(np.float64)), run(x))  # float32 values held in float64
        ints = np.arange(8 * 16).reshape(8, 16) % 5
        np.testing.assert_array_equal(run(ints), run(ints.astype(np.float32)))

    def test_strings_refused(self, run):
        with pytest.raises(yukti.InputError, match="numeric"):
            run(np.full((2, 16), "a"))

    def test_non_contiguous_gives_the_right_answer(self, run, x):
        wide = np.zeros((8, 32), np.float32)
        wide[:, ::2] = x
        view = wide[:, ::2]
        assert not view.flags.c_contiguous
        np.testing.assert_array_equal(run(view), run(x))
        fortran = np.asfortranarray(x)
        np.testing.assert_array_equal(run(fortran), run(x))

    def test_wrong_number_of_inputs(self, run, x):
        with pytest.raises(yukti.InputError, match="expects 1 input"):
            run([x, x])

    def test_dict_with_wrong_name(self, run, x):
        with pytest.raises(yukti.InputError, match=r"missing \['input'\]"):
            run({"features": x})
        np.testing.assert_array_equal(run({"input": x}), run(x))

    def test_torch_tensor_accepted(self, run, x):
        torch = pytest.importorskip("torch")
        np.testing.assert_array_equal(run(torch.from_numpy(x)), run(x))


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_option_refused(backend, jet_dnn):
    _require(backend)
    with pytest.raises(yukti.UnknownNameError, match="has no option"):
        yukti.runner(backend, jet_dnn, no_such_option=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_declared_option_refuses_a_wrong_type(backend):
    """Declared options are validated by the base class before anything is prepared: a value of
    the wrong kind is refused, naming the backend and the option."""
    cls = yukti.runner_class(backend)
    for name, option in cls.options.items():
        if option.type is None and option.choices is None and option.check is None:
            continue  # declared without constraints (a plain default_options dict)
        with pytest.raises(OptionError, match=rf"backend '{backend}' option {name} must be"):
            cls.resolve_options({name: object()})
        assert cls.resolve_options({name: option.default})[name] == option.default


@pytest.mark.parametrize("backend", BACKENDS)
def test_prepare_s_times_this_call(backend, zoo_models):
    """prepare_s is the time of the prepare call it describes: inside the caller's own clock."""
    _require(backend)
    model = next((m for name, m in sorted(zoo_models.items()) if name.startswith("jet_dnn")
                  and yukti.runner_class(backend).supports(m)), None)
    if model is None:
        pytest.skip(f"{backend} supports no form of the jet tagger")
    started = time.perf_counter()
    run = yukti.runner(backend, model)
    elapsed = time.perf_counter() - started
    assert 0 < run.info.prepare_s <= elapsed


@pytest.mark.parametrize("backend", BACKENDS)
def test_unprepared_runner_refuses_calls(backend, jet_dnn):
    _require(backend)
    with pytest.raises(yukti.YuktiError, match="not prepared"):
        yukti.runner_class(backend)()(jet_dnn.data.X[:1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_supports_is_a_support(backend, zoo_models):
    _require(backend)
    for model in zoo_models.values():
        assert isinstance(yukti.runner_class(backend).supports(model), yukti.Support)
