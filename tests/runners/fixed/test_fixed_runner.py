"""The fixed backend beyond bit identity: overflow accounting, traces, threads, caching, refusals.
(Bit identity with hls4ml: test_bit_identity.py; the conversions themselves: test_semantics.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import yukti

pytestmark = pytest.mark.skipif(not yukti.runner_class("fixed").available()[0],
                                reason=f"fixed backend unavailable: {yukti.runner_class('fixed').available()[1]}")


def _inputs(model, n=2000, scale=2.0, seed=0):
    return (np.random.default_rng(seed).normal(size=(n, *model.inputs[0].sample_shape)) * scale).astype(np.float32)


def test_overflows_counted_where_types_are_too_narrow(jet_dnn):
    x = _inputs(jet_dnn)
    narrow = yukti.runner("fixed", jet_dnn, precision="ap_fixed<6,2>")
    out, report = narrow.run_with_overflows(x)
    assert np.array_equal(out, narrow(x))  # counting does not change a value
    assert list(report.columns) == ["layer", "counter", "overflows", "samples"]
    assert report["overflows"].sum() > 0 and (report["samples"] == len(x)).all()
    assert set(report["counter"]) == {"accum", "result"}
    wide = yukti.runner("fixed", jet_dnn, precision="ap_fixed<24,12>")
    assert wide.run_with_overflows(x)[1]["overflows"].sum() == 0


def test_saturation_counted_and_bounded(jet_dnn):
    x = _inputs(jet_dnn, scale=8.0)
    runner = yukti.runner("fixed", jet_dnn, precision="ap_fixed<8,3,AP_RND,AP_SAT>")
    traced = runner.trace(x)
    first_dense = next(name for name in traced if name != "input_1")
    values = traced[first_dense]
    assert values.max() <= 4 - 2 ** -5 and values.min() >= -4  # saturated, never wrapped
    assert runner.run_with_overflows(x)[1].query("layer == @first_dense")["overflows"].sum() > 0


def test_counting_option_accumulates_until_reset(jet_dnn):
    x = _inputs(jet_dnn, n=500)
    runner = yukti.runner("fixed", jet_dnn, precision="ap_fixed<8,3>", count_overflows=True)
    runner(x)
    once = runner.overflows()["overflows"].to_numpy()
    runner(x)
    twice = runner.overflows()
    assert np.array_equal(twice["overflows"].to_numpy(), 2 * once) and (twice["samples"] == 1000).all()
    _, alone = runner.run_with_overflows(x)
    assert np.array_equal(alone["overflows"].to_numpy(), once)  # this call's counts alone...
    assert np.array_equal(runner.overflows()["overflows"].to_numpy(), 3 * once)  # ...and kept in the total
    runner.reset_overflows()
    assert runner.overflows()["overflows"].sum() == 0


def test_run_with_overflows_leaves_a_non_counting_runner_alone(jet_dnn):
    runner = yukti.runner("fixed", jet_dnn, precision="ap_fixed<8,3>")
    runner.run_with_overflows(_inputs(jet_dnn, n=100))
    assert runner.overflows()["overflows"].sum() == 0 and runner.overflows()["samples"].eq(0).all()


def test_trace_ends_in_the_output(jet_dnn):
    x = _inputs(jet_dnn, n=300)
    runner = yukti.runner("fixed", jet_dnn)
    traced = runner.trace(x)
    assert list(traced)[0] == "input_1" and all(v.shape[0] == len(x) for v in traced.values())
    assert np.array_equal(list(traced.values())[-1].reshape(len(x), -1), runner(x).reshape(len(x), -1))


def test_threads_give_the_same_bits(jet_dnn):
    x = _inputs(jet_dnn, n=3000)
    one = yukti.runner("fixed", jet_dnn)(x)
    assert np.array_equal(yukti.runner("fixed", jet_dnn, threads=2)(x), one)


def _named_keras_net(name: str):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(2)
    inputs = keras.Input((6,), name="xyzzy_in")
    hidden = keras.layers.Dense(8, activation="relu", name="plugh_dense")(inputs)
    out = keras.layers.Dense(3, activation="softmax", name="frobozz_out")(hidden)
    return yukti.load(keras.Model(inputs, out), name=name)


def test_second_prepare_is_a_cache_hit_and_the_source_names_nothing_of_the_model(isolated_yukti_dirs):
    model = _named_keras_net("named_net")
    first = yukti.runner("fixed", model, precision="ap_fixed<12,5>")
    again = yukti.runner("fixed", model, precision="ap_fixed<12,5>")
    assert again.info.cache_hit
    source = Path(first.info["source_path"]).read_text()
    assert source.isascii() and "yfx::requant" in source
    for name in ("xyzzy", "plugh", "frobozz", "named_net"):
        assert name not in source  # tensors and kernels are named by position


def test_bad_precision_is_refused_before_any_build(jet_dnn):
    for bad in ("ap_fixed<4,8>", "fixed16", "ap_fixed<70,6>"):
        with pytest.raises(yukti.OptionError, match=r"precision.*(I > W|outside 1\.\.64|does not parse)"):
            yukti.runner("fixed", jet_dnn, precision=bad)


def test_a_layer_it_cannot_emulate_is_named(isolated_yukti_dirs):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(8, name="dense_a")(inputs)
    out = keras.layers.Activation("elu", name="elu_layer")(hidden)
    model = yukti.load(keras.Model(inputs, out), name="elu_net")
    with pytest.raises(yukti.UnsupportedModelError, match=r"elu_layer.*elu"):
        yukti.runner("fixed", model)


def test_benchmark_stores_overflow_counts(jet_dnn):
    frame = yukti.benchmark(jet_dnn, backends=["fixed"], batch_sizes=[1], options={"fixed": {"precision": "ap_fixed<8,3>"}},
                            max_eval_samples=1000, store=False, policy=yukti.TimingPolicy(time_budget_s=0.02, min_calls=5))
    row = frame.iloc[0]
    assert row["status"] == "ok" and row["overflows"] > 0
    per_layer = json.loads(row["overflow_layers"])
    assert sum(per_layer.values()) == row["overflows"]


def test_concurrent_counting_calls_lose_nothing(jet_dnn):
    from concurrent.futures import ThreadPoolExecutor

    x = _inputs(jet_dnn, n=200)
    runner = yukti.runner("fixed", jet_dnn, precision="ap_fixed<8,3>", count_overflows=True)
    runner(x)
    once = runner.overflows()["overflows"].to_numpy()
    runner.reset_overflows()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: runner(x), range(40)))
    total = runner.overflows()
    assert np.array_equal(total["overflows"].to_numpy(), 40 * once) and (total["samples"] == 40 * len(x)).all()
