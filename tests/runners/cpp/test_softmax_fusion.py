"""A Softmax after a dense layer (a classifier's head) is fused into it (codegen.fuse_activations):
at batch 1 the row's softmax is taken while the logits are in registers (ops/softmax.py
register_softmax: no peak shift, a range check, softmax_in_place beyond it), at larger batches by
one pass over the stored rows. Both must agree with onnxruntime for every row length (one vector,
a partial one, several, several panels), every batch, every target this machine runs, logits far
outside the shift-free range, and NaN; what is not a head over the last axis is left unfused."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti
from yukti.runners.cpp import codegen, ir, isa

from test_isa import MARCHES

pytestmark = pytest.mark.skipif(not yukti.registry.backend_info("cpp").available, reason="no C++ compiler")

BATCHES = (1, 2, 7, 64, 130)


def _head(k: int, n: int, *, scale: float = 1.0, seed: int = 0, opset: int = 18, axis: int = -1,
          lead: tuple = ("N",), relu: bool = False, logits_out: bool = False) -> yukti.Model:
    """Gemm (MatMul + Add for a rank-3 input) of K -> n, then Softmax; `scale` multiplies the weights
    (large: logits far from 0); `logits_out`: the logits are a graph output too."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((scale * rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32), "W"),
             numpy_helper.from_array((0.1 * rng.standard_normal(n)).astype(np.float32), "B")]
    if len(lead) > 1:
        nodes = [helper.make_node("MatMul", ["x", "W"], ["logits"], name="dense")]
        inits = inits[:1]
    else:
        nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["logits"], name="dense")]
    into = "logits"
    if relu:
        nodes.append(helper.make_node("Relu", ["logits"], ["r"], name="relu"))
        into = "r"
    nodes.append(helper.make_node("Softmax", [into], ["y"], name="softmax", axis=axis))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*lead, n])]
    if logits_out:
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, [*lead, n]))
    graph = helper.make_graph(nodes, f"head_{k}_{n}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [*lead, k])],
                              outputs, inits)
    return yukti.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))


def _ops(model: yukti.Model) -> list[tuple[str, bool]]:
    graph = codegen.fuse_activations(ir.from_onnx(model.onnx))
    return [(node.op, bool(node.attr("fused_softmax", 0))) for node in graph.nodes]


def test_a_dense_head_takes_its_softmax():
    assert _ops(_head(32, 5)) == [("Gemm", True)]
    assert _ops(_head(32, 5, opset=11, axis=1)) == [("Gemm", True)]  # before 13: axes from 1 on, the last here
    assert _ops(_head(17, 6, lead=("N", 3))) == [("MatMul", True)]  # a row per particle: each row its softmax


@pytest.mark.parametrize(("model", "why"), [
    (_head(17, 6, lead=("N", 3), axis=1), "over the rows, not within one"),
    (_head(17, 6, lead=("N", 3), opset=11, axis=1), "before opset 13: over a sample's 3 x 6 values"),
    (_head(32, 5, logits_out=True), "the logits are an output too"),
    (_head(32, 5, relu=True), "a Relu between (fused into the Gemm; the softmax stays a node)"),
])
def test_what_is_not_a_head_over_the_last_axis_stays_a_node(model, why):
    assert ("Softmax", False) in _ops(model), why


def _agree(model: yukti.Model, march: str | None, x: np.ndarray) -> None:
    got = yukti.runner("cpp", model, march=march)(x)
    want = yukti.runner("onnxruntime", model)(x)
    got, want = (got[0], want[0]) if isinstance(got, tuple) else (got, want)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-5, err_msg=f"march={march}, batch {len(x)}")


@pytest.mark.slow
@pytest.mark.parametrize("march", MARCHES, ids=str)
@pytest.mark.parametrize("n", [1, 2, 5, 16, 17, 40, 200])
def test_fused_heads_agree_at_every_batch(march, n):
    """n: a single class, a partial vector, a whole one (AVX-512), just past it, several vectors,
    several panels (200: more vectors than a one-row block takes on AVX2, so the row is finished by
    softmax_in_place)."""
    model = _head(64, n, seed=n)
    rng = np.random.default_rng(n)
    for batch in BATCHES:
        _agree(model, march, rng.standard_normal((batch, 64)).astype(np.float32))


@pytest.mark.parametrize("march", MARCHES, ids=str)
def test_logits_far_outside_the_shift_free_range_take_the_peak_shift(march):
    """Logits of several hundred (overflowing exp) and of -hundreds (all exps below float's normal
    range): the range check sends the row through softmax_in_place, which matches onnxruntime."""
    model = _head(16, 5, scale=300.0, seed=3)
    rng = np.random.default_rng(3)
    for batch in (1, 2, 9):
        x = rng.standard_normal((batch, 16)).astype(np.float32)
        _agree(model, march, x)
        _agree(model, march, -x)
    low = _head(16, 5, scale=0.0)  # logits = the bias only: shift-free, the everyday case
    _agree(low, march, np.ones((1, 16), np.float32))


@pytest.mark.parametrize("march", MARCHES, ids=str)
def test_a_nan_logit_makes_its_row_nan_as_in_onnxruntime(march):
    model = _head(8, 5, seed=4)
    x = np.random.default_rng(4).standard_normal((3, 8)).astype(np.float32)
    x[1, 2] = np.nan
    for rows in (x[1:2], x):  # batch 1 (registers) and a batch (the pass)
        got = yukti.runner("cpp", model, march=march, check_finite=False)(rows)
        want = yukti.runner("onnxruntime", model, check_finite=False)(rows)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert np.isnan(got).any()
        np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], atol=1e-6, rtol=1e-5)


def test_batch_one_keeps_the_logits_in_registers():
    """The one-row block of a fused head ends in register_softmax (no pass over the row at batch 1);
    a batch goes through the pass; the code differs per ISA only in width."""
    graph = codegen.fuse_activations(ir.from_onnx(_head(32, 5).onnx))
    for target in (isa.AVX512, isa.AVX2, isa.NEON):
        tile = codegen.generate(graph, isa=target).body.split("inline void run_tile")[1]
        assert tile.count("fast_exp(z0)") == 1 and tile.count("fast_exp_span(") == 1
        assert (tile.index("if (total_rows == 1)") < tile.index("fast_exp(z0)") < tile.index("softmax_in_place(")
                < tile.index("// columns") < tile.index("fast_exp_span("))
