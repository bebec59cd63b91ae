"""cpp emitters for what a particle transformer and a tf2onnx DeepSets need: LayerNormalization,
MatMul of two activations (and of stacks of constant matrices), Erf and Gelu, comparisons / logic /
Where / Cast with bool masks, Gather and Slice of activations, Softmax on rank 4; the IR's folding
of Range and Mod on shape values and its handling of a Reshape that merges the batch into the leading
dimension (tf2onnx's Tensordot). Each against onnxruntime on small hand-built graphs at batch 1, 3
and 70 (more than one tile); then the zoo's jet_transformer and jet_deepsets_keras at batch 1, 7
and 256 with zero-padded particles; and the refusals, which name the node."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti
from yukti.errors import UnsupportedModelError

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif(not yukti.runner_class("cpp").available()[0], reason="no C++ compiler")

BATCHES = (1, 3, 70)
ATOL = 1e-5
RNG = np.random.default_rng(2024)
INT64_MAX = np.iinfo(np.int64).max


def _array(value: np.ndarray | float | int | bool) -> np.ndarray:
    array = np.asarray(value)
    return array.astype(np.float32) if array.dtype == np.float64 else array


def build(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, ...]], initializers: dict | None = None, *,
          outputs: tuple[str, ...] = ("y",), opset: int = 18) -> onnx.ModelProto:
    """Every graph input is batched ("N" first); outputs typed and shaped by ONNX shape inference."""
    graph = helper.make_graph(
        nodes, "attention_ops",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape]) for name, shape in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs],
        initializer=[numpy_helper.from_array(_array(a), n) for n, a in (initializers or {}).items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True).graph.output}
    for value in proto.graph.output:
        value.CopyFrom(inferred[value.name])
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    return proto


def random_inputs(shapes: dict[str, tuple[int, ...]], batch: int, *, rounded: bool = False) -> list[np.ndarray]:
    arrays = []
    for shape in shapes.values():
        x = RNG.standard_normal((batch, *shape)).astype(np.float32)
        if rounded:  # halves and zeros: comparisons meet equal values often
            x = np.round(x * 2).astype(np.float32) / 2
        arrays.append(x)
    return arrays


def check_against_ort(proto: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], *, rounded: bool = False,
                      batches: tuple[int, ...] = BATCHES, **options: object) -> yukti.Model:
    model = yukti.load(proto)
    support = yukti.runner_class("cpp").supports(model)
    assert support, support.describe()
    cpp, ort = yukti.runner("cpp", model, **options), yukti.runner("onnxruntime", model)
    for batch in batches:
        arrays = random_inputs(shapes, batch, rounded=rounded)
        feed = arrays[0] if len(arrays) == 1 else arrays
        got, want = cpp(feed), ort(feed)
        got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
        assert len(got) == len(want)
        for index, (g, w) in enumerate(zip(got, want)):
            assert g.shape == w.shape, f"output {index}: {g.shape} vs {w.shape}"
            np.testing.assert_allclose(g, w, atol=ATOL, rtol=1e-6, err_msg=f"output {index}, batch {batch}")
    return model


def refusal(proto: onnx.ModelProto, node: str, words: str) -> str:
    """supports() says no, naming `node` and saying `words`; preparing raises the same."""
    model = yukti.load(proto)
    support = yukti.runner_class("cpp").supports(model)
    assert not support
    assert node in support.reason and words in support.reason, support.reason
    with pytest.raises(UnsupportedModelError, match=node):
        yukti.runner("cpp", model)
    return support.reason


def weights(*shape: int, scale: float = 0.5) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


# -- LayerNormalization -----------------------------------------------------------------------------

LAYERNORM_CASES = {  # per-sample shape, axis (None: the default -1), epsilon (None: the default), bias
    "last_axis_with_bias": ((16, 24), -1, None, True),
    "two_trailing_axes_no_bias": ((4, 6), 1, 1e-5, False),
    "rank4_axis2_large_epsilon": ((2, 4, 6), 2, 1e-2, True),
    "negative_axis": ((2, 4, 6), -2, 1e-5, True),
    "features_only": ((10,), None, 1e-3, True),
}


@pytest.mark.parametrize("case", sorted(LAYERNORM_CASES))
def test_layer_normalization(case):
    shape, axis, epsilon, bias = LAYERNORM_CASES[case]
    rank = len(shape) + 1
    first = (axis if axis is not None else -1) % rank
    normalized = shape[first - 1:]
    inits = {"scale": weights(*normalized) + 1, **({"bias": weights(*normalized)} if bias else {})}
    attrs = {k: v for k, v in (("axis", axis), ("epsilon", epsilon)) if v is not None}
    node = helper.make_node("LayerNormalization", ["x", "scale", *(["bias"] if bias else [])], ["y"], name="ln", **attrs)
    check_against_ort(build([node], {"x": shape}, inits), {"x": shape})


def test_layer_normalization_of_rows_far_from_zero():
    """A large common offset: E[x^2] - E[x]^2 in float32 would cancel; the two-pass mean does not."""
    inits = {"scale": np.ones(32, np.float32), "offset": np.full(32, 300.0, np.float32)}
    nodes = [helper.make_node("Add", ["x", "offset"], ["shifted"], name="shift"),
             helper.make_node("LayerNormalization", ["shifted", "scale"], ["y"], name="ln")]
    model = yukti.load(build(nodes, {"x": (32,)}, inits))
    x = RNG.standard_normal((50, 32)).astype(np.float32)
    shifted = x.astype(np.float64) + 300.0
    exact = (shifted - shifted.mean(1, keepdims=True)) / np.sqrt(shifted.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(yukti.runner("cpp", model)(x), exact, atol=1e-4)


def test_layer_normalization_statistics_outputs():
    """Mean and InvStdDev (one value per normalized row) as graph outputs and used by another node."""
    inits = {"scale": weights(6) + 1, "bias": weights(6)}
    nodes = [helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y", "mean", "inv"], name="ln", axis=-1),
             helper.make_node("Mul", ["mean", "inv"], ["z"], name="use_stats")]
    check_against_ort(build(nodes, {"x": (5, 6)}, inits, outputs=("y", "mean", "z")), {"x": (5, 6)})


def test_layer_normalization_refusals():
    inits = {"scale": weights(6) + 1}
    stash = [helper.make_node("LayerNormalization", ["x", "scale"], ["n", "mean"], name="ln_bf16_stash", stash_type=TensorProto.BFLOAT16),
             helper.make_node("Cast", ["mean"], ["mean_f"], name="to_float", to=TensorProto.FLOAT),
             helper.make_node("Add", ["n", "mean_f"], ["y"], name="add")]
    refusal(build(stash, {"x": (5, 6)}, inits), "ln_bf16_stash", "stash_type")
    over_batch = helper.make_node("LayerNormalization", ["x", "scale_all"], ["y"], name="ln_over_batch", axis=0)
    refusal(build([over_batch], {"x": (6,)}, {"scale_all": weights(1, 6)}), "ln_over_batch", "batch")


# -- MatMul -----------------------------------------------------------------------------------------

MATMUL_CASES = {  # A, B: (per-sample shape of an input, or a constant's full shape, is_constant)
    "attention_scores": (((2, 16, 8), False), ((2, 8, 16), False)),
    "two_matrices": (((4, 5), False), ((5, 3), False)),
    "broadcast_leading": (((3, 4, 5), False), ((1, 5, 2), False)),
    "rank4_both_broadcast": (((2, 1, 4, 5), False), ((1, 3, 5, 6), False)),
    "constant_stack_right": (((3, 4, 5), False), ((3, 5, 2), True)),
    "constant_stack_broadcast": (((3, 4, 5), False), ((1, 1, 5, 2), True)),
    "constant_matrix_left": (((6, 4), True), ((4, 5), False)),
    "constant_vector_left": (((4,), True), ((3, 4, 5), False)),
    "constant_vector_right": (((3, 4), False), ((4,), True)),
}


@pytest.mark.parametrize("case", sorted(MATMUL_CASES))
def test_matmul(case):
    (a_shape, a_const), (b_shape, b_const) = MATMUL_CASES[case]
    inputs, inits = {}, {}
    for name, shape, const in (("a", a_shape, a_const), ("b", b_shape, b_const)):
        (inits if const else inputs)[name] = weights(*shape) if const else shape
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")
    check_against_ort(build([node], inputs, inits), inputs)


def test_matmul_of_activations_with_fused_relu():
    nodes = [helper.make_node("MatMul", ["a", "b"], ["m"], name="mm"), helper.make_node("Relu", ["m"], ["y"], name="relu")]
    shapes = {"a": (2, 3, 4), "b": (2, 4, 5)}
    model = check_against_ort(build(nodes, shapes), shapes)
    from yukti.runners.cpp import codegen, ir

    fused = codegen.fuse_activations(ir.from_onnx(model.onnx))
    assert [n.op for n in fused.nodes] == ["MatMul"] and fused.nodes[0].attr("fused_activation") == "Relu"


def test_matmul_refuses_batch_axes_that_do_not_line_up():
    """(N, 2, 4, 5) @ (N, 5, 6): numpy aligns B's batch axis with A's axis 1 (it only type-checks at
    batch 1 and 2): per-sample code would compute something else."""
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="mm_misaligned")
    refusal(build([node], {"a": (2, 4, 5), "b": (5, 6)}), "mm_misaligned", "batch axes would not line up")


def test_elementwise_refuses_batch_axes_that_do_not_line_up():
    node = helper.make_node("Add", ["a", "b"], ["y"], name="add_misaligned")
    refusal(build([node], {"a": (2, 16), "b": (16,)}), "add_misaligned", "batch axes would not line up")


# -- Erf, Gelu --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fast_math", [False, True])
def test_erf_and_gelu(fast_math):
    """std::erf agrees with onnxruntime to 1e-5, with and without -ffast-math."""
    inits = {"three": np.float32(3.0)}
    nodes = [helper.make_node("Mul", ["x", "three"], ["x3"], name="spread"),
             helper.make_node("Erf", ["x3"], ["erf"], name="erf"),
             helper.make_node("Gelu", ["x3"], ["gelu"], name="gelu"),
             helper.make_node("Gelu", ["x3"], ["gelu_tanh"], name="gelu_tanh", approximate="tanh")]
    shapes = {"x": (5, 7)}
    check_against_ort(build(nodes, shapes, inits, outputs=("erf", "gelu", "gelu_tanh"), opset=20), shapes, fast_math=fast_math)


# -- comparisons, logic, Where, Cast ----------------------------------------------------------------

def test_masked_attention_pattern():
    """The transformer's mask: Gather feature 0, Equal 0 -> [N, 16] bool, Unsqueeze to [N, 1, 1, 16],
    Where against [N, 2, 16, 16] scores with a scalar, Softmax on the last axis."""
    inits = {"zero_index": np.int64(0), "zero": np.float32(0.0), "axes": np.array([1, 2], np.int64),
             "fill": np.float32(-1e4)}
    nodes = [helper.make_node("Gather", ["x", "zero_index"], ["pt"], name="first_feature", axis=2),
             helper.make_node("Equal", ["pt", "zero"], ["padded"], name="is_padded"),
             helper.make_node("Unsqueeze", ["padded", "axes"], ["mask"], name="to_heads"),
             helper.make_node("Where", ["mask", "fill", "scores"], ["masked"], name="mask_fill"),
             helper.make_node("Softmax", ["masked"], ["y"], name="attend", axis=-1)]
    shapes = {"x": (16, 3), "scores": (2, 16, 16)}
    proto = build(nodes, shapes, inits)
    model = yukti.load(proto)
    cpp, ort = yukti.runner("cpp", model), yukti.runner("onnxruntime", model)
    for batch in BATCHES:
        x, scores = random_inputs(shapes, batch)
        x[:, 11:, :] = 0  # padded particles
        x[0, 3, 0] = 0  # and one exact zero among the real ones
        got, want = cpp([x, scores]), ort([x, scores])
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=1e-6)
        assert np.all(got[:, :, :, 11:] < 1e-3)  # the mask did act


def test_comparisons_and_logic():
    """Every comparison and logic operator, with broadcast constants, encoded into one float output
    (bit k = operator k), so 0/1 mistakes show as exact differences."""
    inits = {"row": weights(5).round(), "half": np.float32(0.5), "zero": np.float32(0.0)}
    bools = {
        "lt": ("Less", ["x", "row"]), "gt": ("Greater", ["x", "half"]), "eq": ("Equal", ["x", "zero"]),
        "le": ("LessOrEqual", ["x", "row"]), "ge": ("GreaterOrEqual", ["x", "half"]),
        "both": ("And", ["lt", "gt"]), "either": ("Or", ["eq", "gt"]), "one": ("Xor", ["lt", "eq"]), "neg": ("Not", ["lt"]),
    }
    nodes, total = [], None
    for bit, (name, (op, args)) in enumerate(bools.items()):
        nodes.append(helper.make_node(op, args, [name], name=f"op_{name}"))
        nodes.append(helper.make_node("Cast", [name], [f"{name}_f"], name=f"cast_{name}", to=TensorProto.FLOAT))
        inits[f"w_{name}"] = np.float32(2.0 ** bit)
        nodes.append(helper.make_node("Mul", [f"{name}_f", f"w_{name}"], [f"{name}_w"], name=f"weigh_{name}"))
        if total is None:
            total = f"{name}_w"
        else:
            out = "y" if bit == len(bools) - 1 else f"sum_{name}"
            nodes.append(helper.make_node("Add", [total, f"{name}_w"], [out], name=f"sum_{name}"))
            total = out
    check_against_ort(build(nodes, {"x": (4, 5)}, inits), {"x": (4, 5)}, rounded=True)


WHERE_CASES = {  # condition, x, y: (per-sample shape, is_constant)
    "batched_column_condition": (((4, 1), False), ((4, 5), False), ((5,), True)),
    "constant_condition": (((1, 5), True), ((4, 5), False), ((4, 5), False)),
    "scalar_fill": (((3, 1, 6), False), ((), True), ((3, 2, 6), False)),
    "all_broadcast": (((1, 1), False), ((2, 1), True), ((1, 3), True)),
}


@pytest.mark.parametrize("case", sorted(WHERE_CASES))
def test_where_broadcasting(case):
    """The condition comes from Greater on its own input (a bool mask) or is a bool constant."""
    (c_shape, c_const), (x_shape, x_const), (y_shape, y_const) = WHERE_CASES[case]
    inputs, inits, nodes = {}, {}, []
    if c_const:
        inits["cond"] = RNG.random(c_shape) > 0.5
    else:
        inputs["c"] = c_shape
        inits["zero"] = np.float32(0.0)
        nodes.append(helper.make_node("Greater", ["c", "zero"], ["cond"], name="positive"))
    for name, shape, const in (("a", x_shape, x_const), ("b", y_shape, y_const)):
        if const:
            inits[name] = weights(*shape) if shape else np.float32(-7.5)
        else:
            inputs[name] = shape
    nodes.append(helper.make_node("Where", ["cond", "a", "b"], ["y"], name="select"))
    check_against_ort(build(nodes, inputs, inits), inputs)


def test_cast_refusals():
    to_int = helper.make_node("Cast", ["x"], ["i"], name="cast_to_int", to=TensorProto.INT64)
    back = helper.make_node("Cast", ["i"], ["y"], name="back", to=TensorProto.FLOAT)
    refusal(build([to_int, back], {"x": (4,)}), "cast_to_int", "INT64")
    nodes = [helper.make_node("Greater", ["x", "zero"], ["c"], name="positive"),
             helper.make_node("Where", ["c", "one", "two"], ["i"], name="where_ints"),
             helper.make_node("Cast", ["i"], ["y"], name="to_float", to=TensorProto.FLOAT)]
    refusal(build(nodes, {"x": (4,)}, {"zero": np.float32(0), "one": np.int64(1), "two": np.int64(2)}), "where_ints", "int64")


def test_bool_graph_output_is_refused():
    node = helper.make_node("Greater", ["x", "zero"], ["y"], name="mask_out")
    refusal(build([node], {"x": (4,)}, {"zero": np.float32(0)}), "mask_out", "float32 outputs only")


# -- Gather, Slice, Softmax -------------------------------------------------------------------------

GATHER_CASES = {  # per-sample shape, axis, indices
    "scalar_feature": ((16, 3), 2, np.int64(0)),
    "rows_with_negative": ((5, 4), 1, np.array([3, -1, 0, 3], np.int64)),
    "two_d_indices": ((5, 4), -1, np.array([[0, 1], [3, 2]], np.int32)),
}


@pytest.mark.parametrize("case", sorted(GATHER_CASES))
def test_gather(case):
    shape, axis, indices = GATHER_CASES[case]
    node = helper.make_node("Gather", ["x", "idx"], ["y"], name="gather", axis=axis)
    check_against_ort(build([node], {"x": shape}, {"idx": indices}), {"x": shape})


SLICE_CASES = {  # per-sample shape, starts, ends, axes, steps (None: omitted)
    "qkv_chunk": ((16, 48), [16], [32], [-1], None),
    "steps_two_axes": ((6, 8), [1, 7], [6, 0], [1, 2], [2, -2]),
    "whole_batch_axis": ((6, 8), [0, 2], [INT64_MAX, -1], [0, 2], None),
    "clamped_bounds": ((5, 4), [-100, 2], [100, 1000], [1, 2], [1, 1]),
    "reverse": ((7,), [-1], [-INT64_MAX], [1], [-1]),
}


@pytest.mark.parametrize("case", sorted(SLICE_CASES))
def test_slice(case):
    shape, starts, ends, axes, steps = SLICE_CASES[case]
    inits = {"starts": np.array(starts, np.int64), "ends": np.array(ends, np.int64), "axes": np.array(axes, np.int64)}
    names = ["x", "starts", "ends", "axes"]
    if steps is not None:
        inits["steps"] = np.array(steps, np.int64)
        names.append("steps")
    node = helper.make_node("Slice", names, ["y"], name="slice")
    check_against_ort(build([node], {"x": shape}, inits), {"x": shape})


def test_gather_and_slice_refusals():
    batch_slice = helper.make_node("Slice", ["x", "s", "e", "a"], ["y"], name="slice_batch")
    refusal(build([batch_slice], {"x": (4,)}, {"s": np.array([0], np.int64), "e": np.array([1], np.int64),
                                               "a": np.array([0], np.int64)}), "slice_batch", "batch")
    batch_gather = helper.make_node("Gather", ["x", "i"], ["y"], name="gather_batch", axis=0)
    refusal(build([batch_gather], {"x": (4,)}, {"i": np.array([0], np.int64)}), "gather_batch", "batch")


@pytest.mark.parametrize("axis, opset", [(-1, 18), (2, 18), (1, 18), (2, 11)])
def test_softmax_rank4(axis, opset):
    node = helper.make_node("Softmax", ["x"], ["y"], name="softmax", axis=axis)
    check_against_ort(build([node], {"x": (2, 16, 16)}, opset=opset), {"x": (2, 16, 16)})


# -- shape values: Range and Mod --------------------------------------------------------------------

def _shape_item(index: int, name: str) -> list[onnx.NodeProto]:
    """Nodes computing `name` = x.shape[index] (an int64 scalar), as torch's x.size(index) exports."""
    return [helper.make_node("Shape", ["x"], [f"{name}_shape"], name=f"{name}_shape"),
            helper.make_node("Gather", [f"{name}_shape", f"{name}_index"], [name], name=f"{name}_gather", axis=0)]


def test_range_over_a_per_sample_dimension_folds():
    """Positions 0..n-1 of the particle axis (torch.arange(x.size(1))): a constant once n is."""
    nodes = [*_shape_item(1, "n"), helper.make_node("Range", ["start", "n", "step"], ["positions"], name="positions"),
             helper.make_node("Cast", ["positions"], ["pos_f"], name="pos_float", to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["pos_f", "last"], ["pos_col"], name="pos_col"),
             helper.make_node("Add", ["x", "pos_col"], ["y"], name="add_positions")]
    inits = {"n_index": np.int64(1), "start": np.int64(0), "step": np.int64(1), "last": np.array([1], np.int64)}
    model = check_against_ort(build(nodes, {"x": (6, 3)}, inits), {"x": (6, 3)})
    from yukti.runners.cpp import ir

    assert "Range" not in [n.op for n in ir.from_onnx(model.onnx).nodes]


def test_mod_on_a_per_sample_dimension_folds_into_a_reshape():
    """Reshape to [batch, -1, d mod 4] with d a per-sample dimension (6): [N, 12, 2]."""
    nodes = [*_shape_item(0, "batch"), *_shape_item(2, "d"),
             helper.make_node("Mod", ["d", "four"], ["d_mod"], name="d_mod"),
             helper.make_node("Unsqueeze", ["batch", "zero_axis"], ["batch_1"], name="batch_1"),
             helper.make_node("Unsqueeze", ["d_mod", "zero_axis"], ["d_mod_1"], name="d_mod_1"),
             helper.make_node("Concat", ["batch_1", "minus_one", "d_mod_1"], ["target"], name="target", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape")]
    inits = {"batch_index": np.int64(0), "d_index": np.int64(2), "four": np.int64(4), "zero_axis": np.array([0], np.int64),
             "minus_one": np.array([-1], np.int64)}
    proto = build(nodes, {"x": (4, 6)}, inits)
    # ONNX's data propagation does not follow Mod: the exporter would declare the output's shape
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim[1:]] == [0, 0]
    del proto.graph.output[0].type.tensor_type.shape.dim[1:]
    proto.graph.output[0].type.tensor_type.shape.dim.add().dim_value = 12
    proto.graph.output[0].type.tensor_type.shape.dim.add().dim_value = 2
    check_against_ort(proto, {"x": (4, 6)})


def test_range_and_mod_of_the_batch_size_are_refused():
    ranged = [*_shape_item(0, "b"), helper.make_node("Range", ["start", "b", "step"], ["r"], name="range_batch"),
              helper.make_node("Cast", ["r"], ["y"], name="cast", to=TensorProto.FLOAT)]
    # the output's length is the batch size: no per-sample shape
    refusal(build(ranged, {"x": (3,)}, {"b_index": np.int64(0), "start": np.int64(0), "step": np.int64(1)}), "range_batch",
            "batch size")
    modded = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
              helper.make_node("Mod", ["s", "seven"], ["m"], name="mod_batch"),
              helper.make_node("Reshape", ["x", "m"], ["y"], name="reshape")]
    refusal(build(modded, {"x": (3, 4)}, {"seven": np.array([7, 7, 7], np.int64)}), "mod_batch", "batch size")


# -- a Reshape merging the batch into the leading dimension (tf2onnx's Tensordot) --------------------

def _tensordot(tag: str, source: str, k: int, n: int, *, symbolic_target: bool) -> tuple[list, dict]:
    """tf2onnx's Dense on (16 particles, k features): Reshape to [-1, k], MatMul, Add the bias, Relu,
    Reshape back to [batch, 16, n]; the output is `{tag}_out`."""
    inits = {f"{tag}_flat": np.array([-1, k], np.int64), f"{tag}_W": weights(k, n), f"{tag}_b": weights(n)}
    nodes = [helper.make_node("Reshape", [source, f"{tag}_flat"], [f"{tag}_rows"], name=f"{tag}_reshape"),
             helper.make_node("MatMul", [f"{tag}_rows", f"{tag}_W"], [f"{tag}_mm"], name=f"{tag}_matmul"),
             helper.make_node("Add", [f"{tag}_mm", f"{tag}_b"], [f"{tag}_biased"], name=f"{tag}_bias"),
             helper.make_node("Relu", [f"{tag}_biased"], [f"{tag}_act"], name=f"{tag}_relu")]
    if symbolic_target:  # as tf2onnx writes it: Shape -> Gather([0, 1]) -> Concat([n])
        inits.update({f"{tag}_free": np.array([0, 1], np.int64), f"{tag}_n": np.array([n], np.int64)})
        nodes += [helper.make_node("Shape", [source], [f"{tag}_shape"], name=f"{tag}_shape"),
                  helper.make_node("Gather", [f"{tag}_shape", f"{tag}_free"], [f"{tag}_lead"], name=f"{tag}_lead", axis=0),
                  helper.make_node("Concat", [f"{tag}_lead", f"{tag}_n"], [f"{tag}_target"], name=f"{tag}_target", axis=0)]
    else:
        inits[f"{tag}_target"] = np.array([-1, 16, n], np.int64)
    nodes.append(helper.make_node("Reshape", [f"{tag}_act", f"{tag}_target"], [f"{tag}_out"], name=f"{tag}_back"))
    return nodes, inits


@pytest.mark.parametrize("symbolic_target", [False, True])
def test_tensordot_dense_per_particle(symbolic_target):
    """Two Tensordot Dense layers (bias and ReLU between the reshapes), then the mean over the particles."""
    first, inits = _tensordot("phi1", "x", 3, 8, symbolic_target=symbolic_target)
    second, more = _tensordot("phi2", "phi1_out", 8, 4, symbolic_target=symbolic_target)
    nodes = [*first, *second, helper.make_node("ReduceMean", ["phi2_out", "axes"], ["y"], name="mean", keepdims=0)]
    model = check_against_ort(build(nodes, {"x": (16, 3)}, {**inits, **more, "axes": np.array([1], np.int64)}), {"x": (16, 3)})
    from yukti.runners.cpp import ir

    graph = ir.from_onnx(model.onnx)
    # the merged [batch*16, 8] rows are kept as [batch, 16, 8]: per sample, 16 rows
    assert graph.values[next(n for n in graph.nodes if n.name == "phi1_matmul").outputs[0]].shape == (16, 8)


def test_merged_rows_through_axis_operators():
    """[N*16, 3] rows through MatMul, LayerNormalization (axis -1), Softmax (axis 1), Gemm, a rank-3
    [N*4, 4, 8] view with Transpose, ReduceSum (axis 2) and Concat (axis 2), then back to [N, ...]."""
    inits = {"flat": np.array([-1, 3], np.int64), "W": weights(3, 8), "scale": weights(8) + 1,
             "G": weights(8, 8), "C": weights(8), "cube": np.array([-1, 4, 8], np.int64), "axes": np.array([2], np.int64),
             "back": np.array([-1, 4 * 8 * 5], np.int64)}
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["rows"], name="merge"),
             helper.make_node("MatMul", ["rows", "W"], ["h"], name="mm"),
             helper.make_node("LayerNormalization", ["h", "scale"], ["n"], name="ln", axis=-1),
             helper.make_node("Softmax", ["n"], ["s"], name="softmax", axis=1),
             helper.make_node("Gemm", ["s", "G", "C"], ["g"], name="gemm", transB=1),
             helper.make_node("Reshape", ["g", "cube"], ["c"], name="cube"),
             helper.make_node("Transpose", ["c"], ["t"], name="transpose", perm=[0, 2, 1]),
             helper.make_node("ReduceSum", ["t", "axes"], ["r"], name="reduce", keepdims=1),
             helper.make_node("Concat", ["t", "r"], ["cat"], name="concat", axis=2),
             helper.make_node("Reshape", ["cat", "back"], ["y"], name="split")]
    check_against_ort(build(nodes, {"x": (16, 3)}, inits), {"x": (16, 3)})


def test_merged_rows_refusals():
    inits = {"flat": np.array([-1, 3], np.int64)}
    merge = helper.make_node("Reshape", ["x", "flat"], ["rows"], name="merge")
    across = helper.make_node("Softmax", ["rows"], ["s"], name="softmax_across", axis=0)
    back = helper.make_node("Reshape", ["s", "target"], ["y"], name="back")
    refusal(build([merge, across, back], {"x": (16, 3)}, {**inits, "target": np.array([-1, 16, 3], np.int64)}),
            "softmax_across", "merges the batch")
    refusal(build([merge, helper.make_node("Relu", ["rows"], ["y"], name="relu")], {"x": (16, 3)}, inits),
            "'y'", "merges the batch")
    shape_nodes = [merge, helper.make_node("Shape", ["rows"], ["s"], name="shape_of_rows"),
                   helper.make_node("Reshape", ["rows", "s"], ["y"], name="reshape")]
    refusal(build(shape_nodes, {"x": (16, 3)}, inits), "shape_of_rows", "merges the batch")
    pooled = [merge, helper.make_node("ReduceMean", ["rows", "zero"], ["y"], name="mean_rows", keepdims=1)]
    refusal(build(pooled, {"x": (16, 3)}, {**inits, "zero": np.array([0], np.int64)}), "mean_rows", "batch")


# -- the zoo's attention and Keras DeepSets models --------------------------------------------------

def _padded_particles(batch: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((batch, 16, 3)).astype(np.float32)
    for sample in range(batch):
        x[sample, rng.integers(1, 17):, :] = 0  # zero-padded particles, as in constituent lists
    return x


def _check_zoo(model: yukti.Model, **options: object) -> None:
    cpp, ort = yukti.runner("cpp", model, **options), yukti.runner("onnxruntime", model)
    rng = np.random.default_rng(13)
    for batch in (1, 7, 256):
        x = _padded_particles(batch, rng)
        got, want = cpp(x), ort(x)
        assert got.shape == want.shape == (batch, 5)
        assert float(np.abs(got - want).max()) <= 1e-5, f"batch {batch}"


@pytest.mark.slow
@pytest.mark.parametrize("fast_math", [False, True])
def test_jet_transformer(jet_transformer, fast_math):
    ops = {n.op_type for n in jet_transformer.onnx.graph.node}
    assert {"LayerNormalization", "Erf", "Where", "Equal", "Softmax"} <= ops
    initializers = {i.name for i in jet_transformer.onnx.graph.initializer}
    assert any(n.op_type == "MatMul" and not set(n.input) & initializers for n in jet_transformer.onnx.graph.node)
    _check_zoo(jet_transformer, fast_math=fast_math)


@pytest.mark.slow
def test_jet_deepsets_keras(isolated_yukti_dirs):
    model = yukti.zoo.get("jet_deepsets_keras")
    from yukti.runners.cpp import ir

    graph = ir.from_onnx(model.onnx)
    tensordot = [n for n in graph.nodes if n.op == "MatMul" and "Tensordot" in n.name]
    # tf2onnx's [batch*16, features] MatMuls are there, and kept per sample: 16 rows each
    assert tensordot and all(graph.values[n.outputs[0]].shape[0] == 16 for n in tensordot)
    _check_zoo(model)
