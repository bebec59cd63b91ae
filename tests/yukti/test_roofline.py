"""yukti.roofline: FLOP per sample on graphs with known counts, the host peak from fake cpuinfo
text, and the roofline numbers in the engine's rows, the vocabulary's derivation and `yukti bench`'s table."""

from __future__ import annotations

import io
import math

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti
from yukti import roofline, vocabulary
from yukti.engine import TimingPolicy

RNG = np.random.default_rng(0)
QUICK = TimingPolicy(time_budget_s=0.02, min_calls=5, warmup_calls=1, warmup_s=0.0)


def graph_model(nodes: list, inputs: list, outputs: list, weights: dict[str, np.ndarray], opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def batched(name: str, *shape: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *shape])


def dense(k: int, n: int, *, bias: bool = True, tail: tuple[str, ...] = ()) -> onnx.ModelProto:
    """x [batch, k] -> Gemm (transB, as torch exports Linear) -> each op of `tail` -> y [batch, n]."""
    weights = {"w": RNG.standard_normal((n, k))}
    if bias:
        weights["b"] = RNG.standard_normal(n)
    names = ["h"] + [f"t{i}" for i in range(len(tail))]
    names[-1] = "y"
    nodes = [helper.make_node("Gemm", ["x", "w", "b"] if bias else ["x", "w"], [names[0] if tail else "y"], transB=1)]
    for i, op in enumerate(tail):
        nodes.append(helper.make_node(op, [names[i]], [names[i + 1]]))
    return graph_model(nodes, [batched("x", k)], [batched("y", n)], weights)


# -- FLOP per sample ------------------------------------------------------------------------------

def test_dense_layer_counts_two_per_multiply_add_and_one_per_bias() -> None:
    count = roofline.count_flop(dense(16, 64))
    assert (count.total, count.multiply_add, count.other) == (2048 + 64, 2048, 64)
    assert count.by_op == {"Gemm": 2112} and count.uncounted == ()
    assert roofline.flop_per_sample(dense(16, 64, bias=False)) == 2048
    assert roofline.flop_per_sample(dense(77, 76)) == 2 * 77 * 76 + 76  # odd sizes: no rounding to vector widths


def test_activations_and_softmax_count_per_element() -> None:
    count = roofline.count_flop(dense(16, 64, tail=("Relu", "Sigmoid", "Softmax")))
    assert count.multiply_add == 2048
    assert count.by_op["Relu"] == count.by_op["Sigmoid"] == 64  # a transcendental counts 1 like a max
    assert count.by_op["Softmax"] == roofline.SOFTMAX_FLOP_PER_ELEMENT * 64
    assert count.total == 2048 + 64 + 64 + 64 + 5 * 64


def test_conv_counts_its_window_per_output_element() -> None:
    x = batched("x", 3, 8, 8)
    plain = graph_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])], [x], [batched("y", 4, 8, 8)],
                        {"w": RNG.standard_normal((4, 3, 3, 3)), "b": RNG.standard_normal(4)})
    # 4 x 8 x 8 outputs, each 3 channels x 3 x 3 multiply-adds, plus its bias
    assert roofline.count_flop(plain).multiply_add == 2 * 3 * 9 * 256
    assert roofline.flop_per_sample(plain) == 2 * 3 * 9 * 256 + 256
    grouped = graph_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], group=3)], [x],
                          [batched("y", 6, 8, 8)], {"w": RNG.standard_normal((6, 1, 3, 3))})
    assert roofline.flop_per_sample(grouped) == 2 * (3 // 3) * 9 * (6 * 64)  # Cin / groups per output
    pooled = graph_model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                          helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
                         [x], [batched("y", 4, 4, 4)], {"w": RNG.standard_normal((4, 3, 3, 3))})
    assert roofline.count_flop(pooled).by_op["MaxPool"] == 4 * 64  # a 2 x 2 window per output


def test_matmul_per_row_and_batched_operands() -> None:
    rows = graph_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [batched("x", 16, 3)], [batched("y", 16, 32)],
                       {"w": RNG.standard_normal((3, 32))})
    assert roofline.flop_per_sample(rows) == 2 * 3 * 16 * 32  # 16 rows per sample (DeepSets' per-particle layer)
    both = graph_model([helper.make_node("MatMul", ["a", "b"], ["y"])], [batched("a", 2, 16, 8), batched("b", 2, 8, 16)],
                       [batched("y", 2, 16, 16)], {})
    assert roofline.flop_per_sample(both) == 2 * 8 * (2 * 16 * 16)  # attention scores: both operands per sample


def test_constant_subgraphs_and_data_movement_cost_nothing() -> None:
    # c = a + b is computed from initializers alone: folded once, not per sample
    model = graph_model([helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("Add", ["x", "c"], ["s"]),
                         helper.make_node("Transpose", ["s"], ["y"], perm=[0, 2, 1])],
                        [batched("x", 4, 5)], [batched("y", 5, 4)], {"a": np.ones((4, 5)), "b": np.ones((4, 5))})
    count = roofline.count_flop(model)
    assert count.total == 20 and count.by_op == {"Add": 20, "Transpose": 0}


def test_an_op_outside_the_convention_is_named_not_guessed() -> None:
    model = graph_model([helper.make_node("Einsum", ["x", "w"], ["y"], equation="bk,kn->bn")], [batched("x", 4)],
                        [batched("y", 3)], {"w": RNG.standard_normal((4, 3))}, opset=17)
    count = roofline.count_flop(model)
    assert count.uncounted == ("Einsum",) and count.total == 0


def test_torch_and_hand_written_graphs_of_one_net_count_the_same() -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 5), nn.Softmax(dim=1)).eval()
    exported = yukti.load(net, torch.zeros(1, 16), name="dense_net")
    # the same net as tf2onnx writes Dense layers: MatMul then Add
    nodes, weights, previous = [], {}, "x"
    for i, (k, n) in enumerate([(16, 64), (64, 32), (32, 5)]):
        weights[f"w{i}"], weights[f"b{i}"] = RNG.standard_normal((k, n)), RNG.standard_normal(n)
        nodes += [helper.make_node("MatMul", [previous, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        previous = f"a{i}"
        if i < 2:
            nodes.append(helper.make_node("Relu", [previous], [f"r{i}"]))
            previous = f"r{i}"
    nodes.append(helper.make_node("Softmax", [previous], ["y"], axis=1))
    by_hand = graph_model(nodes, [batched("x", 16)], [batched("y", 5)], weights)
    torch_count, hand_count = roofline.count_flop(exported), roofline.count_flop(by_hand)
    assert torch_count.multiply_add == hand_count.multiply_add == 2 * (16 * 64 + 64 * 32 + 32 * 5)
    assert torch_count.total == hand_count.total == 2 * (16 * 64 + 64 * 32 + 32 * 5) + (64 + 32 + 5) + (64 + 32) + 5 * 5


# -- the host's peak ------------------------------------------------------------------------------

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
cpu MHz\t\t: 2600.000
flags\t\t: fpu sse sse2 ssse3 fma avx avx2 avx512f avx512dq amx_tile
processor\t: 1
cpu MHz\t\t: 1200.000
flags\t\t: fpu sse sse2
"""
ZEN = XEON.replace("avx512f avx512dq amx_tile", "").replace("2600.000", "3000.000")
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid
CPU implementer\t: 0x41
"""


def test_avx512_peak_from_cpu_mhz() -> None:
    peak = roofline.peak_from(XEON, env={})
    assert (peak.isa, peak.lanes, peak.fma_units, peak.ghz, peak.clock_source) == ("avx512f", 16, 2, 2.6, "cpu MHz")
    assert peak.flop_per_cycle == 64  # the "64 FLOP/cycle"
    assert peak.gflops == pytest.approx(2 * 16 * 2 * 2.6)
    assert peak.arithmetic() == ("2 FMA units (assumed) x 16 lanes (avx512f) x 2 FLOP = 64 FLOP/cycle x 2.6 GHz (cpu MHz) "
                                 "x 1 thread = 166.4 GFLOP/s")


def test_a_virtual_machines_nominal_clock_is_flagged() -> None:
    """A hypervisor's cpu MHz is the nominal clock (this project's 2.6 GHz Xeon VMs run FMAs at about
    3.8 GHz): the peak says so where it is printed, and YUKTI_CPU_GHZ (or cpufreq) silences it."""
    vm = XEON.replace("amx_tile", "amx_tile hypervisor")
    peak = roofline.peak_from(vm, env={})
    assert peak.gflops == pytest.approx(166.4) and "nominal clock" in peak.note
    assert peak.arithmetic().endswith(peak.note) and "YUKTI_CPU_GHZ" in peak.arithmetic()
    assert roofline.peak_from(vm, env={"YUKTI_CPU_GHZ": "3.8"}).note == ""
    assert roofline.peak_from(vm, max_freq_khz="3800000", env={}).note == ""
    assert roofline.peak_from(XEON, env={}).note == ""  # bare metal: cpu MHz as it is


def test_cpufreq_max_wins_over_cpu_mhz_and_the_environment_over_both() -> None:
    peak = roofline.peak_from(XEON, max_freq_khz="3800000\n", env={})
    assert (peak.ghz, peak.clock_source) == (3.8, "cpuinfo_max_freq")
    assert peak.gflops == pytest.approx(64 * 3.8)
    forced = roofline.peak_from(XEON, max_freq_khz="3800000", env={"YUKTI_CPU_GHZ": "2.0", "YUKTI_FMA_UNITS": "1"})
    assert (forced.ghz, forced.clock_source) == (2.0, "YUKTI_CPU_GHZ")
    assert (forced.fma_units, forced.fma_units_source) == (1, "YUKTI_FMA_UNITS")
    assert forced.gflops == pytest.approx(1 * 16 * 2 * 2.0)
    # a value that is not a positive number is ignored, not trusted
    assert roofline.peak_from(XEON, env={"YUKTI_FMA_UNITS": "two", "YUKTI_CPU_GHZ": "-1"}).gflops == pytest.approx(166.4)


def test_avx2_sse_and_neon_lanes() -> None:
    zen = roofline.peak_from(ZEN, env={})
    assert (zen.isa, zen.lanes) == ("avx2+fma", 8) and zen.gflops == pytest.approx(2 * 8 * 2 * 3.0)
    assert roofline.peak_from(ZEN.replace(" fma ", " "), env={}).lanes == 4  # AVX2 without FMA: no FMA vectors
    arm = roofline.peak_from(ARM, machine="aarch64", env={})
    assert (arm.isa, arm.lanes, arm.gflops) == ("neon", 4, None)  # ARM prints no clock in cpuinfo
    assert "YUKTI_CPU_GHZ" in arm.note and "no peak" in arm.arithmetic()
    assert roofline.peak_from(ARM, machine="aarch64", env={"YUKTI_CPU_GHZ": "3"}).gflops == pytest.approx(2 * 4 * 2 * 3)


def test_threads_multiply_up_to_the_physical_cores() -> None:
    one = roofline.peak_from(XEON, env={}, cores=2)
    two = roofline.peak_from(XEON, threads=2, env={}, cores=2)
    many = roofline.peak_from(XEON, threads=8, env={}, cores=2)
    assert two.gflops == pytest.approx(2 * one.gflops) and many.gflops == two.gflops and many.threads == 2
    assert "x 2 threads =" in two.arithmetic()


def test_this_host_peak_is_the_product_of_its_parts() -> None:
    peak = roofline.host_peak_gflops(1)
    assert peak.lanes in (4, 8, 16) and peak.fma_units >= 1
    if peak.gflops is not None:
        assert peak.gflops == pytest.approx(peak.fma_units * peak.lanes * 2 * peak.ghz * peak.threads)


# -- the engine, the vocabulary and the results table ------------------------------------------------

def test_vocabulary_derives_gflops_and_the_share_of_peak() -> None:
    frame = pd.DataFrame({"flop_per_sample": [1000, 1000, None, 1000], "throughput_per_s": [2e6, 4e6, 1e6, 1e6],
                          "peak_gflops": [10.0, None, 10.0, 0.0]})
    derived = vocabulary.derive(frame)
    np.testing.assert_allclose(derived["gflops"], [2.0, 4.0, np.nan, 1.0])
    np.testing.assert_allclose(derived["pct_of_peak"], [20.0, np.nan, np.nan, np.nan])  # no or zero peak: no share
    assert vocabulary.metric("gflops").higher_is_better and vocabulary.metric("pct_of_peak").unit == "%"
    kept = vocabulary.derive(frame.assign(gflops=[7.0, None, None, None]))  # asv tracks gflops itself: kept
    assert kept["gflops"].iloc[0] == 7.0 and kept["pct_of_peak"].iloc[0] == pytest.approx(70.0)


@pytest.fixture(scope="module")
def dense_model() -> yukti.Model:
    return yukti.load(dense(16, 64, tail=("Relu",)), name="dense_16x64")


def test_engine_rows_carry_the_roofline_numbers(dense_model: yukti.Model, tmp_path) -> None:
    frame = yukti.benchmark(dense_model, backends=["onnxruntime"], batch_sizes=(1, 64), policy=QUICK,
                            max_eval_samples=64, store=str(tmp_path))
    assert (frame["status"] == "ok").all()
    assert (frame["flop_per_sample"] == 2048 + 64 + 64).all()
    peak = roofline.host_peak_gflops(1).gflops
    if peak is None:
        assert frame["peak_gflops"].isna().all() and frame["pct_of_peak"].isna().all()
    else:
        np.testing.assert_allclose(frame["peak_gflops"].astype(float), peak)
        np.testing.assert_allclose(frame["pct_of_peak"], 100 * frame["gflops"] / peak)
    np.testing.assert_allclose(frame["gflops"], frame["flop_per_sample"].astype(float) * frame["throughput_per_s"] / 1e9)
    assert (frame["gflops"] > 0).all()
    # stored as facts (flop_per_sample, peak_gflops); the rates derived again on reading
    from yukti import results

    [path] = [p for p in tmp_path.glob("*.parquet") if not p.name.endswith(".curves.parquet")]
    on_disk = pd.read_parquet(path)
    assert {"flop_per_sample", "peak_gflops"} <= set(on_disk.columns) and "gflops" not in on_disk.columns
    loaded = results.load(tmp_path)
    np.testing.assert_allclose(loaded["gflops"].sort_values(), frame["gflops"].sort_values())


def test_a_graph_that_cannot_be_counted_costs_only_the_roofline_columns(dense_model: yukti.Model, monkeypatch) -> None:
    def refuse(model: object) -> None:
        raise yukti.errors.UnsupportedModelError("cpp: no static shape")

    monkeypatch.setattr(roofline, "count_flop", refuse)
    frame = yukti.benchmark(dense_model, backends=["onnxruntime"], batch_sizes=(1,), policy=QUICK, max_eval_samples=64,
                            store=False)
    assert (frame["status"] == "ok").all() and frame["throughput_per_s"].notna().all()
    assert frame["flop_per_sample"].isna().all() and frame["gflops"].isna().all() and frame["pct_of_peak"].isna().all()


def test_results_table_shows_the_rate_columns_only_when_some_row_has_them() -> None:
    from rich.console import Console

    from yukti.cli import results_table

    def render(frame: pd.DataFrame) -> str:
        out = io.StringIO()
        Console(file=out, width=250).print(results_table(vocabulary.derive(frame), "t"))
        return out.getvalue()

    base = {"backend": "cpp", "batch_size": 1024, "latency_p50_us": 50.0, "latency_p99_us": 60.0,
            "latency_native_p50_us": math.nan, "throughput_per_s": 2e7, "max_abs_diff": 1e-7, "prepare_s": 0.5, "status": "ok"}
    shown = render(pd.DataFrame([{**base, "flop_per_sample": 8798, "peak_gflops": 166.4}]))
    assert "GFLOP/s" in shown and "% peak" in shown
    assert "176" in shown and "105.7" in shown  # 8798 x 2e7 / 1e9 = 175.96 GFLOP/s, 105.7% of 166.4
    hidden = render(pd.DataFrame([base]))
    assert "GFLOP/s" not in hidden and "% peak" not in hidden
