"""The ONNX rewrite that folds shape arithmetic (runners/onnx_static_shapes.py): the rewritten
graph computes what the original computes, on onnxruntime, at several batch sizes; the shape
values are folded where that is exact and left to run time where it is not.

The graphs: torch.onnx's export of a small particle transformer (reshape arithmetic around a
2-head attention, an opset-18 ReduceMean), tf2onnx's Tensordot pattern written out by hand (what a
Keras Dense on (particles, features) exports to), the zoo's tf2onnx Conv1D, and hand-made graphs
that use the batch size other than as the leading dimension.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti
from yukti.runners import onnx_static_shapes
from yukti.runners.onnx_static_shapes import lower_reduce_opset, static_shapes

ort = pytest.importorskip("onnxruntime")

BATCHES = (1, 7, 256)


def _run(proto: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def _inputs(batch: int, per_sample: tuple[int, ...], seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed + batch).standard_normal((batch, *per_sample)).astype(np.float32)
    if len(per_sample) == 2:
        x[:, -4:, :] = 0  # zero-padded particles: the transformer's mask has something to mask
    return x


def _assert_same_function(original: onnx.ModelProto, rewritten: onnx.ModelProto, per_sample: tuple[int, ...]) -> None:
    onnx.checker.check_model(rewritten, full_check=True)
    for batch in BATCHES:
        x = _inputs(batch, per_sample)
        for want, got in zip(_run(original, x), _run(rewritten, x)):
            assert got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def _constants(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


def _reshape_targets(proto: onnx.ModelProto) -> list[np.ndarray | None]:
    """Every Reshape's target: its value when a constant, None when computed at run time."""
    constants = _constants(proto)
    return [constants.get(n.input[1]) for n in proto.graph.node if n.op_type == "Reshape"]


@functools.lru_cache(maxsize=1)
def jet_transformer_onnx() -> bytes:
    """One encoder block on (16 particles, 3 features) as particle-transformer code writes it (not
    nn.MultiheadAttention), exported by yukti.load with torch.onnx: its ONNX form has torch's
    Shape/Gather/Unsqueeze/Concat/Reshape arithmetic, Slice, Cast, Equal/Where, LayerNormalization,
    Erf and an opset-18 ReduceMean. Random weights (seeded): agreement does not need training."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class SelfAttention(nn.Module):
        def __init__(self, dim: int, heads: int) -> None:
            super().__init__()
            self.heads, self.scale = heads, (dim // heads) ** -0.5
            self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

        def forward(self, x, padded):
            b, n, d = x.shape
            q, k, v = (t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
            scores = ((q @ k.transpose(-2, -1)) * self.scale).masked_fill(padded[:, None, None, :], -1e4)
            return self.out((scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d))

    class Transformer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.attention = nn.Linear(3, 16), SelfAttention(16, 2)
            self.norm_1, self.norm_2 = nn.LayerNorm(16), nn.LayerNorm(16)
            self.feed_forward = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
            self.head = nn.Linear(16, 5)

        def forward(self, x):
            padded = x[:, :, 0] == 0
            h = self.embed(x)
            h = self.norm_1(h + self.attention(h, padded))
            h = self.norm_2(h + self.feed_forward(h))
            return torch.softmax(self.head(h.mean(dim=1)), dim=1)

    torch.manual_seed(0)
    return yukti.load(Transformer(), np.ones((2, 16, 3), np.float32), name="jet_transformer").onnx_bytes


def tensordot_onnx() -> bytes:
    """tf2onnx's export of Dense(32) -> Dense(32) on (16, 3) inputs, mean over the particles, Dense(5):
    each Dense is a Tensordot, i.e. Reshape to [-1, features], MatMul, and Reshape back to a shape
    computed as Concat(Gather(Shape(x), [0, 1]), [units]) in int32 (opset 15, as tf2onnx writes)."""
    rng = np.random.default_rng(1)
    nodes, inits = [], []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array, name))
        return name

    const("free", np.array([0, 1], np.int32))
    source, features = "input", 3
    for layer, units in (("phi_1", 32), ("phi_2", 32)):
        p = f"{layer}/Tensordot"
        nodes += [
            helper.make_node("Shape", [source], [f"{p}/Shape:0"], name=f"{p}/Shape"),
            helper.make_node("Cast", [f"{p}/Shape:0"], [f"{p}/Shape_i32:0"], name=f"{p}/Shape__cast", to=TensorProto.INT32),
            helper.make_node("Gather", [f"{p}/Shape_i32:0", "free"], [f"{p}/GatherV2:0"], name=f"{p}/GatherV2", axis=0),
            helper.make_node("Concat", [f"{p}/GatherV2:0", const(f"{p}/units", np.array([units], np.int32))], [f"{p}/concat:0"],
                             name=f"{p}/concat_1", axis=0),
            helper.make_node("Cast", [f"{p}/concat:0"], [f"{p}/target:0"], name=f"{p}__cast", to=TensorProto.INT64),
            helper.make_node("Reshape", [source, const(f"{p}/flat", np.array([-1, features], np.int64))], [f"{p}/Reshape:0"],
                             name=f"{p}/Reshape"),
            helper.make_node("MatMul", [f"{p}/Reshape:0", const(f"{layer}/kernel", rng.standard_normal((features, units)).astype(np.float32))],
                             [f"{p}/MatMul:0"], name=f"{p}/MatMul"),
            helper.make_node("Reshape", [f"{p}/MatMul:0", f"{p}/target:0"], [f"{p}:0"], name=p),
            helper.make_node("Relu", [f"{p}:0"], [f"{layer}/Relu:0"], name=f"{layer}/Relu"),
        ]
        source, features = f"{layer}/Relu:0", units
    nodes += [
        helper.make_node("ReduceMean", [source], ["mean:0"], name="mean/Mean", axes=[1], keepdims=0),
        helper.make_node("MatMul", ["mean:0", const("out/kernel", rng.standard_normal((32, 5)).astype(np.float32))], ["logits:0"], name="out/MatMul"),
        helper.make_node("Softmax", ["logits:0"], ["output"], name="out/Softmax"),
    ]
    graph = helper.make_graph(nodes, "jet_deepsets_keras", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 16, 3])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]).SerializeToString()


def flatten_and_back_onnx(*, back_from_flat: bool) -> bytes:
    """x (batch, 16, 3) -> Reshape to [batch * 16, 3] -> MatMul -> Reshape back to (batch, 16, 4): the
    batch used other than as the leading dimension. The way back reads the batch from the input's
    shape, or (`back_from_flat`) as the flat tensor's first dimension divided by 16."""
    w = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    c = {name: numpy_helper.from_array(np.array(v, np.int64), name) for name, v in
         (("zero", [0]), ("sixteen", 16), ("three", [3]), ("tail", [16, 4]), ("axis0", [0]))}
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Mul", ["batch", "sixteen"], ["rows"]),
        helper.make_node("Concat", ["rows", "three"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"], name="to_flat"),
        helper.make_node("MatMul", ["flat", "w"], ["mm"]),
    ]
    if back_from_flat:
        nodes += [helper.make_node("Shape", ["mm"], ["mm_shape"]),
                  helper.make_node("Gather", ["mm_shape", "zero"], ["mm_rows"], axis=0),
                  helper.make_node("Div", ["mm_rows", "sixteen"], ["back_batch"])]
    else:
        nodes += [helper.make_node("Identity", ["batch"], ["back_batch"])]
    nodes += [helper.make_node("Concat", ["back_batch", "tail"], ["back_shape"], axis=0),
              helper.make_node("Reshape", ["mm", "back_shape"], ["y"], name="from_flat")]
    graph = helper.make_graph(nodes, "flat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, 4])],
                              [*c.values(), numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def batch_squared_onnx() -> bytes:
    """A Reshape target with two entries that depend on the batch: [batch, batch * 0 + 48]. Folding
    either into a number would be wrong or a guess; it must stay computed at run time."""
    c = {name: numpy_helper.from_array(np.array(v, np.int64), name) for name, v in
         (("zero", [0]), ("nought", 0), ("per_sample", 48))}
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Mul", ["batch", "nought"], ["none"]),
        helper.make_node("Add", ["none", "per_sample"], ["width"]),
        helper.make_node("Concat", ["batch", "width"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="flatten_by_batch"),
    ]
    graph = helper.make_graph(nodes, "squared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 48])], list(c.values()))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_transformer_shape_arithmetic_is_folded_and_the_function_kept():
    original = onnx.load_from_string(jet_transformer_onnx())
    # the export has what this test is about; if the exporter changes, the test says so
    assert {"Shape", "Gather", "Concat", "Reshape", "Slice", "Where", "Erf", "LayerNormalization"} <= {n.op_type for n in original.graph.node}
    assert any(not all(i in _constants(original) for i in n.input[1:]) for n in original.graph.node if n.op_type == "Reshape")
    rewritten = static_shapes(original)
    _assert_same_function(original, rewritten, (16, 3))
    assert not {"Shape", "Concat", "Constant"} & {n.op_type for n in rewritten.graph.node}
    targets = _reshape_targets(rewritten)
    assert targets and all(t is not None and t[0] == -1 and (t[1:] > 0).all() for t in targets)
    for node in rewritten.graph.node:  # every axes/bounds input a converter reads is now a constant
        if node.op_type in ("Slice", "Unsqueeze", "Squeeze", "ReduceMean"):
            assert all(i in _constants(rewritten) for i in node.input[1:] if i), node.name
    assert len(rewritten.graph.node) < len(original.graph.node)
    assert [i.type for i in rewritten.graph.input] == [i.type for i in original.graph.input]  # the batch stays dynamic


def test_transformer_reduce_mean_is_lowered_to_opset_17():
    original = onnx.load_from_string(jet_transformer_onnx())
    assert onnx_static_shapes.default_opset(original) == 18
    lowered = lower_reduce_opset(static_shapes(original))
    assert onnx_static_shapes.default_opset(lowered) == 17
    (mean,) = [n for n in lowered.graph.node if n.op_type == "ReduceMean"]
    assert len(mean.input) == 1 and {a.name for a in mean.attribute} >= {"axes"}
    _assert_same_function(original, lowered, (16, 3))


def test_reduce_is_not_lowered_when_another_node_needs_opset_18():
    # Split with num_outputs exists from opset 18 only: lowering the opset would change it
    graph = helper.make_graph(
        [helper.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2),
         helper.make_node("ReduceMean", ["a", "axes"], ["m"], keepdims=0),
         helper.make_node("Add", ["m", "m"], ["y"]), helper.make_node("Identity", ["b"], ["z"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"]), helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert lower_reduce_opset(model) is model


def test_reduce_without_axes_and_noop_becomes_identity():
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["x"], ["y"], noop_with_empty_axes=1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    lowered = lower_reduce_opset(model)
    assert [n.op_type for n in lowered.graph.node] == ["Identity"]
    _assert_same_function(model, lowered, (4,))


def test_tensordot_targets_become_constants():
    original = onnx.load_from_string(tensordot_onnx())
    rewritten = static_shapes(original)
    _assert_same_function(original, rewritten, (16, 3))
    assert sorted(n.op_type for n in rewritten.graph.node) == sorted(["Reshape", "MatMul", "Reshape", "Relu"] * 2 + ["ReduceMean", "MatMul", "Softmax"])
    assert [t.tolist() for t in _reshape_targets(rewritten)] == [[-1, 3], [-1, 16, 32], [-1, 32], [-1, 16, 32]]


@pytest.mark.parametrize("back_from_flat", [False, True], ids=["back_from_input_shape", "back_from_flat_shape"])
def test_batch_folded_into_another_dimension_stays_right(back_from_flat):
    original = onnx.load_from_string(flatten_and_back_onnx(back_from_flat=back_from_flat))
    rewritten = static_shapes(original)
    _assert_same_function(original, rewritten, (16, 3))
    # [16 * batch, 3]: one entry depends on the batch, so -1 is that entry exactly
    assert [t.tolist() for t in _reshape_targets(rewritten)] == [[-1, 3], [-1, 16, 4]]


def test_two_batch_dependent_entries_stay_computed_at_run_time():
    original = onnx.load_from_string(batch_squared_onnx())
    rewritten = static_shapes(original)
    _assert_same_function(original, rewritten, (16, 3))
    assert _reshape_targets(rewritten) == [None]
    assert "Shape" in {n.op_type for n in rewritten.graph.node}


def test_view_batch_minus_one_uses_the_per_sample_size():
    # torch's x.view(x.size(0), -1): [batch, -1] has two unknowns for a count alone; the input's
    # per-sample size (48) fixes the -1
    c = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("zero", [0]), ("minus_one", [-1]))]
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
             helper.make_node("Concat", ["b", "minus_one"], ["t"], axis=0), helper.make_node("Reshape", ["x", "t"], ["y"])]
    graph = helper.make_graph(nodes, "view", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 48])], c)
    original = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten = static_shapes(original)
    _assert_same_function(original, rewritten, (16, 3))
    assert [t.tolist() for t in _reshape_targets(rewritten)] == [[-1, 48]]


def test_overridable_initializer_is_not_folded():
    # an initializer listed as a graph input is a default the caller may replace
    nodes = [helper.make_node("Reshape", ["x", "target"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
                                           helper.make_tensor_value_info("target", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.array([-1, 4], np.int64), "target")])
    original = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten = static_shapes(original)
    assert [n.input[1] for n in rewritten.graph.node] == ["target"]
    assert "target" in [i.name for i in rewritten.graph.input]


def test_float_constants_are_left_to_the_runtime():
    # folding float arithmetic here could differ from the runtime in the last bit: only copies
    # and integer shape arithmetic are folded
    c = [numpy_helper.from_array(np.array([2.0], np.float32), "two")]
    nodes = [helper.make_node("Sqrt", ["two"], ["root"]), helper.make_node("Mul", ["x", "root"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], c)
    original = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert [n.op_type for n in static_shapes(original).graph.node] == ["Sqrt", "Mul"]


@pytest.mark.slow
def test_tf2onnx_conv1d_is_unchanged_in_function(mdt_conv1d):
    original = mdt_conv1d.onnx
    rewritten = lower_reduce_opset(static_shapes(original))
    _assert_same_function(original, rewritten, tuple(mdt_conv1d.inputs[0].shape[1:]))
    for node in rewritten.graph.node:
        if node.op_type in ("Squeeze", "Unsqueeze", "Reshape"):
            assert node.input[1] in _constants(rewritten), node.name


def test_torch_eager_on_the_rewritten_graphs_matches_onnxruntime():
    """The eager backend converts through the same rewrite (torch_common)."""
    pytest.importorskip("torch")
    for data, per_sample in ((jet_transformer_onnx(), (16, 3)), (tensordot_onnx(), (16, 3)),
                             (flatten_and_back_onnx(back_from_flat=True), (16, 3)), (batch_squared_onnx(), (16, 3))):
        model = yukti.load(data)
        run, reference = yukti.runner("torch", model), yukti.runner("onnxruntime", model)
        assert run.info["module_from"] == "onnx2torch"
        for batch in BATCHES:
            x = _inputs(batch, per_sample)
            np.testing.assert_allclose(run(x), reference(x), rtol=0, atol=1e-5)


INT64_MAX, INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min
# One node with constant value inputs, on a (batch, 6, 4) input: onnx2torch's module for it reads
# the values from a tensor; torch_common inlines them as a plain torch call (ONNX semantics).
INLINED_CASES = {
    "slice_reversed": ("Slice", {"starts": [-1], "ends": [INT64_MIN], "axes": [2], "steps": [-1]}, {}),
    "slice_negative_step_clamped": ("Slice", {"starts": [10], "ends": [-20], "axes": [1], "steps": [-2]}, {}),
    "slice_to_the_end": ("Slice", {"starts": [1], "ends": [INT64_MAX], "axes": [-1]}, {}),
    "slice_two_axes": ("Slice", {"starts": [0, 1], "ends": [5, -1], "axes": [1, 2], "steps": [2, 1]}, {}),
    "reshape_with_zero": ("Reshape", {"shape": [0, -1]}, {}),
    "squeeze_negative_axis": ("Squeeze", {"axes": [-2]}, {"shape": (1, 4)}),
    "expand": ("Expand", {"shape": [1, 6, 4]}, {"shape": (1, 4)}),
    "tile": ("Tile", {"repeats": [1, 2, 3]}, {}),
    "gather_scalar": ("Gather", {"indices": -1}, {"axis": 1}),
}


@pytest.mark.parametrize("case", sorted(INLINED_CASES))
def test_inlined_value_ops_match_onnxruntime(case):
    torch = pytest.importorskip("torch")
    from yukti.runners import torch_common

    op, values, extra = INLINED_CASES[case]
    extra = dict(extra)
    per_sample = extra.pop("shape", (6, 4))
    inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in values.items()]
    node = helper.make_node(op, ["x", *values], ["y"], name=case, **extra)
    graph = helper.make_graph([node], case, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *per_sample])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto = onnx.shape_inference.infer_shapes(proto)  # the output's shape, which yukti.load needs
    model = yukti.load(proto.SerializeToString())
    module = torch_common.module_on(model, torch_common.CONVERTED, "cpu")
    assert not any(type(m).__name__.startswith("Onnx") for m in module.modules()), "not inlined"
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, *per_sample)).astype(np.float32)
        with torch.no_grad():
            got = module(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(got, _run(proto, x)[0])
