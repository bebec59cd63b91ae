"""Bit identity of the `fixed` backend with the `hls4ml` backend: every output element `==`.

The `fixed` backend promises hls4ml's ap_fixed arithmetic bit for bit, so the reference here is
hls4ml's own C++ emulation (not the float model) on the same options. Inputs are standard normal
times 2, so narrow types really overflow (asserted through the overflow counters).

Matrix: 5 models x 3 configurations = 15 hls4ml builds (10-40 s each on two shared cores, about 6 min
in all; cached in the test cache afterwards, then about 1.5 min), plus a two-input net (Add, Multiply,
Concatenate) at the saturating and the wrapping type; 10,000 samples per case; each case
also checks the overflow-counting path against hls4ml.

    model          | sat                            | wrap                            | default
    ---------------+--------------------------------+---------------------------------+----------------
    jet_dnn        | ap_fixed<10,4,AP_RND,AP_SAT>   | ap_fixed<8,3>                   | ap_fixed<16,6>
    jet_dnn_keras  | sat + layer_precision (dense_2 | ap_fixed<8,3>, Resource,        | ap_fixed<16,6>
                   |   RND_CONV/SAT_SYM, wrapping   |   reuse_factor=2                |
                   |   accum; output RND_ZERO/SAT)  |                                 |
    dense          | ap_fixed<10,4,AP_RND,AP_SAT>   | ap_fixed<8,3>                   | ap_fixed<16,6>
    conv1d         | sat + granularity="name"       | ap_fixed<8,3>, Resource, rf=2   | ap_fixed<16,6>
    conv2d         | sat + layer_precision (conv1   | ap_fixed<8,3>                   | ap_fixed<16,6>
                   |   RND_INF/SAT_ZERO, out        |                                 |
                   |   RND_MIN_INF/SAT)             |                                 |

Models: jet_dnn (torch zoo, 16-64-32-32-5 relu/softmax), jet_dnn_keras (its Keras twin); the random
Keras nets below: "dense" (10-32-16-16-8-3: Dense, BatchNormalization, LeakyReLU, tanh, sigmoid,
relu, softmax: the three dense variants in one net, to stay within 15 builds), "conv1d" (MDT
shape (216, 8): Conv1D relu, MaxPooling1D, Conv1D, AveragePooling1D, Flatten, Dense sigmoid),
"conv2d" ((13, 21, 1): Conv2D relu, MaxPooling2D, Flatten, Dense softmax). Conv nets are Keras
because hls4ml mis-orders a torch Flatten after a convolution.

granularity="name" is not used on the softmax nets: hls4ml's inferred types make their outputs
constant (the hls4ml backend's own tests show it), which would compare nothing.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import yukti

pytestmark = pytest.mark.filterwarnings("ignore")

SAMPLES = 10_000
INPUT_SCALE = 2.0  # standard normal x 2: inputs and sums leave the narrow types' ranges
SAT = "ap_fixed<10,4,AP_RND,AP_SAT>"
WRAP = "ap_fixed<8,3>"


# -- models ------------------------------------------------------------------------------------------


def _keras() -> Any:
    return pytest.importorskip("keras")


def _bias(keras: Any, seed: int) -> Any:
    # Keras initializes biases to zero; random ones make the bias path (its cast to accum_t) count
    return keras.initializers.RandomNormal(stddev=0.5, seed=seed)


def _dense_net() -> Any:
    keras = _keras()
    keras.utils.set_random_seed(11)
    inputs = keras.Input((10,), name="features")
    x = keras.layers.Dense(32, bias_initializer=_bias(keras, 1), name="fc1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.LeakyReLU(negative_slope=0.1, name="lrelu1")(x)
    x = keras.layers.Dense(16, activation="tanh", bias_initializer=_bias(keras, 2), name="fc2")(x)
    x = keras.layers.Dense(16, activation="sigmoid", bias_initializer=_bias(keras, 3), name="fc3")(x)
    x = keras.layers.Dense(8, activation="relu", bias_initializer=_bias(keras, 4), name="fc4")(x)
    outputs = keras.layers.Dense(3, activation="softmax", bias_initializer=_bias(keras, 5), name="out")(x)
    model = keras.Model(inputs, outputs, name="bitid_dense")
    # a fresh BatchNormalization is the identity; trained-looking statistics make it scale and shift
    rng = np.random.default_rng(11)
    bn = model.get_layer("bn1")
    bn.set_weights([rng.uniform(0.5, 2.0, 32), rng.normal(0, 0.5, 32), rng.normal(0, 0.5, 32), rng.uniform(0.3, 3.0, 32)])
    return model


def _conv1d_net() -> Any:
    keras = _keras()
    keras.utils.set_random_seed(14)
    inputs = keras.Input((216, 8), name="hits")
    x = keras.layers.Conv1D(8, 3, padding="same", activation="relu", bias_initializer=_bias(keras, 1), name="conv1")(inputs)
    x = keras.layers.MaxPooling1D(4, name="pool1")(x)
    x = keras.layers.Conv1D(4, 3, bias_initializer=_bias(keras, 2), name="conv2")(x)
    x = keras.layers.AveragePooling1D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", bias_initializer=_bias(keras, 3), name="out")(x)
    return keras.Model(inputs, outputs, name="bitid_conv1d")


def _conv2d_net() -> Any:
    keras = _keras()
    keras.utils.set_random_seed(15)
    inputs = keras.Input((13, 21, 1), name="cluster")
    x = keras.layers.Conv2D(4, 3, activation="relu", bias_initializer=_bias(keras, 1), name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(3, activation="softmax", bias_initializer=_bias(keras, 2), name="out")(x)
    return keras.Model(inputs, outputs, name="bitid_conv2d")


RANDOM_NETS: dict[str, Callable[[], Any]] = {"dense": _dense_net, "conv1d": _conv1d_net, "conv2d": _conv2d_net}
ZOO = ("jet_dnn", "jet_dnn_keras")

# (model, configuration id, options, whether the types must overflow on these inputs)
CASES = [
    ("jet_dnn", "sat", {"precision": SAT}, True),
    ("jet_dnn", "wrap", {"precision": WRAP}, True),
    ("jet_dnn", "default", {}, False),
    ("jet_dnn_keras", "sat-layers", {
        "precision": SAT,
        "layer_precision": {"dense_2": {"result": "ap_fixed<9,3,AP_RND_CONV,AP_SAT_SYM>", "accum": "ap_fixed<12,4>"},
                            "output": "ap_fixed<12,5,AP_RND_ZERO,AP_SAT>"}}, True),
    ("jet_dnn_keras", "wrap-resource", {"precision": WRAP, "strategy": "Resource", "reuse_factor": 2}, True),
    ("jet_dnn_keras", "default", {}, False),
    ("dense", "sat", {"precision": SAT}, True),
    ("dense", "wrap", {"precision": WRAP}, True),
    ("dense", "default", {}, False),
    ("conv1d", "sat-name", {"precision": SAT, "granularity": "name"}, True),
    ("conv1d", "wrap-resource", {"precision": WRAP, "strategy": "Resource", "reuse_factor": 2}, True),
    ("conv1d", "default", {}, False),
    ("conv2d", "sat-layers", {
        "precision": SAT,
        "layer_precision": {"conv1": {"result": "ap_fixed<8,3,AP_RND_INF,AP_SAT_ZERO>", "accum": "ap_fixed<14,6,AP_TRN,AP_SAT>"},
                            "out": "ap_fixed<11,4,AP_RND_MIN_INF,AP_SAT>"}}, True),
    ("conv2d", "wrap", {"precision": WRAP}, True),
    ("conv2d", "default", {}, False),
]


# -- helpers ---------------------------------------------------------------------------------------


def _require(*names: str) -> None:
    infos = {info.name: info for info in yukti.backends()}
    for name in names:
        info = infos.get(name)
        if info is None or not info.available:
            pytest.skip(f"{name} backend unavailable: {info.reason if info else 'not registered'}")


@pytest.fixture(scope="module")
def load_model(request: pytest.FixtureRequest) -> Callable[[str], yukti.Model]:
    """name -> yukti.Model, each built once per module (zoo models come from the session fixtures)."""
    built: dict[str, yukti.Model] = {}

    def get(name: str) -> yukti.Model:
        if name not in built:
            built[name] = (request.getfixturevalue(name) if name in ZOO
                           else yukti.load(RANDOM_NETS[name](), name=f"bitid_{name}"))
        return built[name]

    return get


def _inputs(model: yukti.Model, n: int = SAMPLES, seed: int = 0) -> np.ndarray:
    shape = (n, *model.inputs[0].sample_shape)
    return (np.random.default_rng(seed).standard_normal(shape) * INPUT_SCALE).astype(np.float32)


def _hls4ml_runner(model: yukti.Model, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The hls4ml backend without its float self-check: that check guards against hls4ml converting
    into garbage, measured against the float model; here the reference is hls4ml itself, and the
    narrow types are chosen to depart from float (ap_fixed<8,3> fails it on every random net)."""
    import yukti.runners.hls4ml.runner as hls4ml_runner

    monkeypatch.setattr(hls4ml_runner, "self_check", lambda *args, **kwargs: {"skipped": "bit-identity test"})
    return yukti.runner("hls4ml", model, **options)


def _assert_identical(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    """np.array_equal on every element; on failure, how many samples differ and the first of them."""
    assert got.shape == expected.shape, f"{what}: shapes {got.shape} != {expected.shape}"
    if np.array_equal(got, expected):
        return
    rows_got, rows_expected = got.reshape(len(got), -1), expected.reshape(len(expected), -1)
    differ = np.flatnonzero((rows_got != rows_expected).any(axis=1))
    i = int(differ[0]) if len(differ) else 0
    with np.printoptions(precision=10, threshold=64, linewidth=160):
        raise AssertionError(
            f"{what}: {len(differ)} of {len(got)} samples differ; first is sample {i}:\n"
            f"  fixed : {rows_got[i]}\n  hls4ml: {rows_expected[i]}")


# -- bit identity ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model_name, config, options, overflows", [pytest.param(*case, id=f"{case[0]}-{case[1]}")
                                                                     for case in CASES])
def test_fixed_equals_hls4ml(load_model: Callable[[str], yukti.Model], monkeypatch: pytest.MonkeyPatch,
                             model_name: str, config: str, options: dict[str, Any], overflows: bool) -> None:
    _require("fixed", "hls4ml")
    model = load_model(model_name)
    x = _inputs(model)
    fixed = yukti.runner("fixed", model, **options)
    hls = _hls4ml_runner(model, options, monkeypatch)
    expected = hls(x)
    what = f"fixed vs hls4ml, {model_name} [{config}] {options}"
    # a constant output would compare nothing: the case must exercise varied values
    assert len(np.unique(expected.reshape(len(x), -1), axis=0)) > 1, f"{what}: hls4ml's output is constant"
    _assert_identical(fixed(x), expected, what)
    # the overflow-counting kernels are separate code: they must compute the same values
    counted, report = fixed.run_with_overflows(x)
    _assert_identical(counted, expected, what + " (counting overflows)")
    if overflows:
        assert report["overflows"].sum() > 0, f"{what}: no value overflowed; the case does not test overflow modes"


# -- trace and option errors (fixed only, no hls4ml build) ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model_name, options", [("jet_dnn", {"precision": WRAP}), ("dense", {"precision": SAT}),
                                                 ("conv1d", {}), ("conv2d", {"precision": WRAP})])
def test_trace_final_layer_is_the_output(load_model: Callable[[str], yukti.Model], model_name: str,
                                         options: dict[str, Any]) -> None:
    _require("fixed")
    model = load_model(model_name)
    fixed = yukti.runner("fixed", model, **options)
    x = _inputs(model, n=500, seed=1)
    trace = fixed.trace(x)
    out = fixed(x)
    names = list(trace)
    assert len(names) >= 3, f"trace has only {names}"
    assert all(len(v) == len(x) for v in trace.values())
    _assert_identical(trace[names[-1]].reshape(out.shape), out, f"{model_name} trace[{names[-1]!r}] vs output")


@pytest.mark.parametrize("option", ["precision", "layer_precision"])
@pytest.mark.parametrize("bad", ["ap_fixed<4,8>", "ap_fixed<70,6>", "fixed16"])
def test_bad_precision_is_refused_by_name(load_model: Callable[[str], yukti.Model], option: str, bad: str) -> None:
    _require("fixed")
    model = load_model("dense")
    value: Any = bad if option == "precision" else {"fc1": bad}
    with pytest.raises(ValueError) as err:
        yukti.runner("fixed", model, **{option: value})
    # an option the parser refuses, or a type the emulation refuses: both are Yukti's own errors
    assert isinstance(err.value, (yukti.OptionError, yukti.UnsupportedModelError)), type(err.value)
    assert bad in str(err.value), str(err.value)


def _merge_net() -> Any:
    """Two inputs joined by Add, Multiply and Concatenate (hls4ml's Merge and Concatenate layers)."""
    keras = _keras()
    keras.utils.set_random_seed(5)
    jet, extra = keras.Input((8,), name="jet"), keras.Input((8,), name="extra")
    a = keras.layers.Dense(8, activation="relu", bias_initializer=_bias(keras, 6), name="da")(jet)
    b = keras.layers.Dense(8, activation="tanh", bias_initializer=_bias(keras, 7), name="db")(extra)
    joined = keras.layers.Concatenate(name="cat")([keras.layers.Add(name="add")([a, b]),
                                                   keras.layers.Multiply(name="mul")([a, b])])
    outputs = keras.layers.Dense(3, activation="softmax", bias_initializer=_bias(keras, 8), name="out")(joined)
    return keras.Model([jet, extra], outputs, name="bitid_merge")


@pytest.mark.slow
@pytest.mark.parametrize("precision", [SAT, WRAP])
def test_two_input_merges_equal_hls4ml(monkeypatch: pytest.MonkeyPatch, precision: str) -> None:
    _require("fixed", "hls4ml")
    model = yukti.load(_merge_net(), name="bitid_merge")
    rng = np.random.default_rng(1)
    x = [(rng.standard_normal((SAMPLES, 8)) * INPUT_SCALE).astype(np.float32) for _ in range(2)]
    fixed = yukti.runner("fixed", model, precision=precision)
    expected = _hls4ml_runner(model, {"precision": precision}, monkeypatch)(x)
    _assert_identical(fixed(x), expected, f"merge net at {precision}")
    counted, report = fixed.run_with_overflows(x)
    _assert_identical(counted, expected, f"merge net at {precision}, counting overflows")
    assert report["overflows"].sum() > 0  # these types are too narrow for the sums and products
