"""ONNX graph -> the small IR the emitters read.

Every activation tensor has a free leading batch dimension and static per-sample dimensions; the
per-sample shapes are found by running ONNX shape inference twice, at batch 1 and batch 2, and
keeping what scales with the batch. Values computed only from initializers are folded into
constants (one-node reference evaluation). Identity and inference-time Dropout are removed.

The model file is untrusted: the IR is built from `yukti.safe_names.sanitized_onnx(model)`, so every
node and tensor name the emitters can see is a derived identifier, never a raw string from the file,
and folding refuses (before allocating) a constant larger than `yukti.limits` allows.

A tensor whose leading dimension merges the batch with k rows of each sample (tf2onnx's Tensordot:
Reshape [batch, 16, 3] -> [batch*16, 3], MatMul, Reshape back to [batch, 16, 32]) is the same
memory as [batch, k, ...]: the IR keeps it so, with per-sample shape (k, ...), as long as only
per-row operators use it (see `_rows_node`); anything else is refused naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from yukti import limits
from yukti.errors import UnsupportedModelError
from yukti.safe_names import sanitized_onnx

REMOVED_OPS = {"Identity", "Dropout"}
# Ops whose output size follows from the *values* of their inputs (a repeat count, a target shape):
# folded only when shape inference has told their output shape, so the size is checked first.
VALUE_SIZED_OPS = {
    "Tile", "Expand", "ConstantOfShape", "Range", "Pad", "Resize", "Upsample", "OneHot", "CenterCropPad", "Col2Im",
    "HannWindow", "HammingWindow", "BlackmanWindow", "MelWeightMatrix", "DFT", "STFT", "AffineGrid",
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
}


@dataclass
class Value:
    """A tensor: per-sample `shape` when `batched`, else the full shape of the constant `const`."""

    name: str
    shape: tuple[int, ...]
    batched: bool
    const: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def full_shape(self) -> tuple[int | str, ...]:
        return ("N", *self.shape) if self.batched else self.shape


@dataclass
class Node:
    op: str
    name: str
    inputs: list[str]  # "" marks an omitted optional input
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


@dataclass
class Graph:
    inputs: list[str]
    outputs: list[str]
    values: dict[str, Value]
    nodes: list[Node]
    opset: int
    # graph outputs that are not float32 (name -> numpy type): generated C++ returns float32 only
    non_float_outputs: dict[str, str] = field(default_factory=dict)

    def value(self, name: str) -> Value:
        return self.values[name]


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")  # attribute strings are untrusted bytes
        elif isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        elif isinstance(value, list):
            value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        out[attr.name] = value
    return out


def _with_batch(model: onnx.ModelProto, batch: int, *, data_prop: bool = True) -> dict[str, tuple[int, ...]]:
    """Static shapes of every value when graph inputs have batch size `batch`."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    initializers = {i.name for i in copy.graph.initializer}
    for value in copy.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if not dims:
            raise UnsupportedModelError(f"cpp: graph input {value.name!r} has no shape")
        dims[0].Clear()
        dims[0].dim_value = batch
        for axis, dim in enumerate(dims[1:], start=1):
            if not dim.HasField("dim_value"):
                raise UnsupportedModelError(
                    f"cpp: graph input {value.name!r} has a dynamic dimension on axis {axis} ({dim.dim_param or '?'}); "
                    "generated C++ needs every dimension but the batch to be fixed"
                )
    for value in copy.graph.output:  # declared output shapes would pin the batch; let inference decide
        value.type.tensor_type.ClearField("shape")
    del copy.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(copy, strict_mode=True, data_prop=data_prop)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise UnsupportedModelError(f"cpp: ONNX shape inference failed at batch {batch}: {exc}") from exc
    shapes = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        tensor = value.type.tensor_type
        if tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim):
            shapes[value.name] = tuple(d.dim_value for d in tensor.shape.dim)
    return shapes


def _check_inference_dropout(proto: onnx.NodeProto, name: str, inputs: list[str], constants: dict[str, np.ndarray]) -> None:
    """Dropout is the identity only at inference: refuse a training_mode that is not a constant False."""
    training = inputs[2] if len(inputs) > 2 and inputs[2] else None
    if training is None:
        return
    if training not in constants:
        raise UnsupportedModelError(f"cpp: Dropout node {name} takes training_mode from a computed tensor; only inference (False) is supported")
    if bool(np.asarray(constants[training]).reshape(-1)[0]):
        ratio = inputs[1] if len(inputs) > 1 and inputs[1] else None
        if ratio is not None and ratio in constants and float(np.asarray(constants[ratio]).reshape(-1)[0]) == 0.0:
            return  # training mode with ratio 0 keeps every value: still the identity
        raise UnsupportedModelError(f"cpp: Dropout node {name} runs in training mode (random masks); export the model in eval mode")


def _check_fold_size(node: onnx.NodeProto, name: str, inputs: list[str], constants: dict[str, np.ndarray],
                     known: dict[str, tuple[int, ...]], folded_bytes: int) -> int:
    """Bytes the folded outputs of `node` may take (at most), or UnsupportedModelError before anything
    is computed when that passes yukti.limits. Shapes come from inference where it knows them; else
    a bound from the inputs' sizes (their sum plus product covers concatenation, broadcasting and
    outer products), and ops sized by their input values are not folded blind."""
    arrays = [constants[i] for i in inputs if i]
    bound = 0
    for output in (o for o in node.output if o):
        if output in known:
            elements = int(np.prod(known[output], dtype=object))
        elif node.op_type == "Range" and len(arrays) == 3 and all(a.size == 1 for a in arrays):
            elements = _range_length(*(np.asarray(a).reshape(-1)[0] for a in arrays), name)
        elif node.op_type in VALUE_SIZED_OPS:
            raise UnsupportedModelError(f"cpp: node {name} ({node.op_type}) computes a constant whose size shape inference "
                                        "cannot tell; refusing to fold it blind (yukti.limits)")
        else:
            sizes = [int(a.size) for a in arrays] or [1]
            elements = sum(sizes) + int(np.prod(sizes, dtype=object))
        if elements > limits.MAX_TENSOR_ELEMENTS:
            raise UnsupportedModelError(f"cpp: folding node {name} ({node.op_type}) would make a constant of up to {elements:,} "
                                        f"elements; the limit is {limits.MAX_TENSOR_ELEMENTS:,} (yukti.limits.MAX_TENSOR_ELEMENTS)")
        bound += elements * 8
    if folded_bytes + bound > limits.MAX_CONSTANT_BYTES:
        raise UnsupportedModelError(f"cpp: folding node {name} ({node.op_type}) takes the model's constants past "
                                    f"{limits.MAX_CONSTANT_BYTES:,} bytes (yukti.limits.MAX_CONSTANT_BYTES)")
    return bound


def _range_length(start: Any, limit: Any, delta: Any, name: str) -> int:
    """Elements of Range(start, limit, delta), from its (scalar) inputs: Range's size is told by its
    values, which data propagation does not follow through folded shape arithmetic."""
    if delta == 0:
        raise UnsupportedModelError(f"cpp: Range node {name} has a delta of 0")
    return max(int(np.ceil((float(limit) - float(start)) / float(delta))), 0)


def _fold(node: onnx.NodeProto, constants: dict[str, np.ndarray], opset: int) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    inputs = [n for n in node.input if n]
    graph = helper.make_graph(
        [node], "fold",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(constants[n].dtype), constants[n].shape) for n in inputs],
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return ReferenceEvaluator(model).run(None, {n: constants[n] for n in inputs})


# Shape arithmetic torch/tf2onnx exporters write around reshapes (Shape -> Gather -> Concat ->
# Reshape). With only the batch dimension dynamic, such values are known but for the batch size:
# they are evaluated here on object arrays where None stands for the batch size.
SHAPE_VALUE_OPS = {"Shape", "Gather", "Slice", "Concat", "Cast", "Unsqueeze", "Squeeze", "Mul", "Add", "Sub", "Div",
                   "Mod", "ReduceProd", "Identity", "Range"}


def _symbolic_input(name: str, constants: dict[str, np.ndarray], symbolic: dict[str, np.ndarray]) -> np.ndarray:
    return symbolic[name] if name in symbolic else np.asarray(constants[name]).astype(object)


def _arith(op: str, a: Any, b: Any, fmod: bool = False, node: str = "") -> Any:
    if a is None or b is None:
        known = b if a is None else a
        keeps = (op == "Mul" and known == 1) or (op in ("Add", "Sub") and known == 0 and (b is not None or op == "Add")) \
            or (op == "Div" and b == 1 and a is None)
        if keeps:
            return None
        raise UnsupportedModelError(f"cpp: node {node} does shape arithmetic {op} on the batch size; generated C++ needs "
                                    "per-sample shapes")
    a, b = int(a), int(b)
    if op == "Mul":
        return a * b
    if op == "Add":
        return a + b
    if op == "Sub":
        return a - b
    if op == "Div":
        return int(np.trunc(a / b)) if b else 0
    if fmod:  # C's fmod: the sign of the dividend
        return int(np.fmod(a, b)) if b else 0
    return a % b if b else 0  # Mod (integers: the sign of the divisor, as numpy and ONNX fmod=0)


def _fold_symbolic(proto: onnx.NodeProto, inputs: list[str], constants: dict[str, np.ndarray],
                   symbolic: dict[str, np.ndarray], values: dict[str, Value]) -> np.ndarray:
    """One shape op on values known but for the batch size; an object array (None: the batch)."""
    op, attrs = proto.op_type, _attributes(proto)
    if op == "Shape":  # of a batched tensor: its input is an activation, not a value
        full = np.array([None, *values[inputs[0]].shape], dtype=object)
        rank = len(full)
        start, end = attrs.get("start", 0), attrs.get("end", rank)
        return full[slice(start if start >= 0 else start + rank, end if end >= 0 else end + rank)]
    arg = [(_symbolic_input(i, constants, symbolic) if i else None) for i in inputs]
    if op in ("Cast", "Identity"):
        return arg[0]
    if op == "Gather":
        return np.take(arg[0], np.asarray(arg[1]).astype(np.int64), axis=attrs.get("axis", 0))
    if op == "Concat":
        return np.concatenate([a for a in arg if a is not None], axis=attrs.get("axis", 0))
    if op == "Slice":
        data, starts, ends = arg[0], arg[1], arg[2]
        axes = arg[3] if len(arg) > 3 and arg[3] is not None else range(len(starts))
        steps = arg[4] if len(arg) > 4 and arg[4] is not None else [1] * len(starts)
        index = [slice(None)] * data.ndim
        for axis, start, end, step in zip(axes, starts, ends, steps):
            index[int(axis)] = slice(int(start), int(min(max(int(end), -2**31), 2**31)), int(step))
        return data[tuple(index)]
    if op in ("Unsqueeze", "Squeeze"):
        axes = arg[1] if len(arg) > 1 and arg[1] is not None else attrs.get("axes")
        if op == "Squeeze":
            return np.squeeze(arg[0], axis=None if axes is None else tuple(int(a) for a in axes))
        result = arg[0]
        for axis in sorted(int(a) if int(a) >= 0 else int(a) + result.ndim + len(axes) for a in axes):
            result = np.expand_dims(result, axis)
        return result
    if op == "ReduceProd":
        if any(v is None for v in arg[0].reshape(-1)):
            raise UnsupportedModelError(f"cpp: node {proto.name} multiplies the batch size into a shape")
        return np.array(int(np.prod(arg[0].astype(np.int64))), dtype=object)
    if op == "Range":  # a length that depends on the batch size is no per-sample shape
        raise UnsupportedModelError(f"cpp: node {proto.name} (Range) counts up to the batch size; generated C++ needs per-sample shapes")
    a, b = np.broadcast_arrays(arg[0], arg[1])
    fmod = bool(attrs.get("fmod", 0))
    return np.vectorize(lambda x, y: _arith(op, x, y, fmod, proto.name), otypes=[object])(a, b) if a.size else a


def _reshaped(shape: tuple[int, ...], target: np.ndarray, allowzero: bool, name: str) -> tuple[int, ...]:
    """ONNX Reshape's output shape (0 copies the input's dimension unless allowzero, one -1 is inferred)."""
    dims = [int(d) for d in np.asarray(target).reshape(-1)]
    if not allowzero:
        dims = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(dims)]
    total = int(np.prod(shape, dtype=np.int64))
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        raise UnsupportedModelError(f"cpp: Reshape node {name} has an invalid target {dims}")
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
        if known == 0 or total % known:
            raise UnsupportedModelError(f"cpp: Reshape node {name}: {shape} cannot take the target {dims}")
        dims[dims.index(-1)] = total // known
    if int(np.prod(dims, dtype=np.int64)) != total:
        raise UnsupportedModelError(f"cpp: Reshape node {name}: {shape} cannot take the target {dims}")
    return tuple(dims)


# Operators that compute each element (or each row, for the axis ops) from the same position of
# their inputs: they may take a tensor whose leading dimension merges the batch with k rows per
# sample (see _rows_node), which is then the same as [batch, k, ...].
ELEMENTWISE_OPS = {
    "Relu", "LeakyRelu", "Elu", "Sigmoid", "Tanh", "Exp", "Abs", "Neg", "Sqrt", "Clip", "Erf", "Gelu", "Cast",
    "Add", "Sub", "Mul", "Div", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Not",
    "Where",
}
AXIS_OPS = {"Softmax", "LogSoftmax", "LayerNormalization", "Concat"}  # one `axis` attribute
REDUCE_AXES_INPUT_SINCE = {"ReduceMean": 18, "ReduceMax": 18, "ReduceProd": 18, "ReduceSum": 13}  # as ops/reduce.py
MERGING_OPS = {"Reshape", "Flatten"}  # may merge the batch into the leading dimension, or split it out again


def _merged_refusal(name: str, op: str, tensor: str, rows: int, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"cpp: node {name} ({op}) takes {tensor!r}, whose leading dimension merges the batch with {rows} rows of each "
        f"sample (a Reshape such as tf2onnx's Tensordot); {why}. Only per-row operators may use it until a Reshape "
        "gives it back a leading batch dimension")


def _rows_node(proto: onnx.NodeProto, name: str, inputs: list[str], attrs: dict[str, Any], merged: dict[str, int],
               out_rows: dict[str, int], values: dict[str, Value], opset: int) -> tuple[list[str], dict[str, Any]]:
    """A node that takes or makes a batch-merged tensor ([batch*k, ...] in the ONNX graph, [batch, k, ...]
    in the IR): its inputs and attributes in the IR's view (axes after the leading one move by one),
    or UnsupportedModelError naming the node when it would mix rows of different samples.
    `out_rows`: k of each output (1 for an ordinary batched one)."""
    op = proto.op_type
    if op in MERGING_OPS or op in ("Squeeze", "Unsqueeze"):
        return inputs, attrs  # the same buffer re-read: any output that keeps whole samples together is fine
    taken = [i for i in inputs if i in merged]
    if not taken:
        bad = next(o for o, k in out_rows.items() if k != 1)
        raise UnsupportedModelError(
            f"cpp: tensor {bad!r} of node {name} ({op}) merges the batch into its leading dimension; only a Reshape "
            "(or Flatten) may do that in generated C++")
    rows = merged[taken[0]]
    others = [i for i in inputs if i and i not in merged and values[i].batched]
    if others:
        raise _merged_refusal(name, op, taken[0], rows, f"it also takes {others[0]!r}, whose leading dimension is the batch alone")
    if any(merged[i] != rows for i in taken) or any(k != rows for k in out_rows.values()):
        raise _merged_refusal(name, op, taken[0], rows, "its output does not keep the same rows")
    rank = len(values[taken[0]].shape)  # of the ONNX tensor: the IR's per-sample rank (the k rows included)

    def shifted(axis: int) -> int:
        if not -rank <= axis < rank:
            raise _merged_refusal(name, op, taken[0], rows, f"axis {axis} is out of range")
        if axis % rank == 0:
            raise _merged_refusal(name, op, taken[0], rows, "it works along the leading (merged) axis")
        return axis % rank + 1

    attrs = dict(attrs)
    if op in ELEMENTWISE_OPS or op == "MatMul":
        return inputs, attrs  # shape inference said the rows stay: broadcasting never reaches across them
    if op == "Gemm" and not attrs.get("transA", 0) and not any(values[i].batched for i in inputs[1:] if i):
        return inputs, attrs  # each row of A times the constant B (the emitter takes rows from the shape)
    if op in AXIS_OPS:
        default = -1 if op == "LayerNormalization" or (op != "Concat" and opset >= 13) else 1
        if op == "Concat" and "axis" not in attrs:
            raise _merged_refusal(name, op, taken[0], rows, "it has no axis")
        attrs["axis"] = shifted(int(attrs.get("axis", default)))
        return inputs, attrs
    if op == "Transpose":
        perm = [int(p) for p in attrs.get("perm", range(rank - 1, -1, -1))]
        if perm and perm[0] % rank != 0:
            raise _merged_refusal(name, op, taken[0], rows, f"perm {perm} moves the leading (merged) axis")
        attrs["perm"] = [0, 1, *(p % rank + 1 for p in perm[1:])]
        return inputs, attrs
    if op in REDUCE_AXES_INPUT_SINCE:
        from_input = opset >= REDUCE_AXES_INPUT_SINCE[op]
        given = inputs[1] if from_input and len(inputs) > 1 and inputs[1] else None
        if from_input and given is not None and values[given].const is None:
            raise _merged_refusal(name, op, taken[0], rows, "its axes are not a constant")
        axes = values[given].const if given is not None else (None if from_input else attrs.get("axes"))
        if axes is None or not np.asarray(axes).size:
            if attrs.get("noop_with_empty_axes", 0):
                return inputs, attrs
            raise _merged_refusal(name, op, taken[0], rows, "it reduces every axis, the merged one included")
        moved = np.array([shifted(int(a)) for a in np.asarray(axes).reshape(-1)], np.int64)
        if not from_input:
            attrs["axes"] = [int(a) for a in moved]
            return inputs, attrs
        static = f"{given}_rows_{proto.output[0]}"
        values[static] = Value(static, tuple(moved.shape), False, moved)
        return [inputs[0], static, *inputs[2:]], attrs
    raise _merged_refusal(name, op, taken[0], rows, f"{op} is not known to work row by row")


def _infer_node(proto: onnx.NodeProto, inputs: list[str], attrs: dict[str, Any], full: dict[str, tuple[int, ...]],
                types: dict[str, int], consts: dict[str, np.ndarray], opset: int) -> dict[str, tuple[int, ...]]:
    """Static output shapes of one node from its inputs' full shapes (`full`, at one batch size) and the
    values folded here: for nodes after shape arithmetic that ONNX's data propagation did not follow
    (a Slice whose ends were divided, ...). {} when ONNX cannot tell either."""
    feeds = [i for i in dict.fromkeys(inputs) if i and i not in consts]
    if any(i not in full or i not in types for i in feeds):
        return {}
    outputs = [o for o in proto.output if o]
    graph = helper.make_graph(
        [helper.make_node(proto.op_type, inputs, list(proto.output), **attrs)], "node",
        [helper.make_tensor_value_info(i, types[i], full[i]) for i in feeds],
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(consts[i]), i) for i in dict.fromkeys(inputs) if i in consts],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise UnsupportedModelError(f"cpp: ONNX shape inference failed at node {proto.name or proto.op_type}: {exc}") from exc
    shapes = {}
    for value in inferred.graph.output:
        tensor = value.type.tensor_type
        if tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim):
            shapes[value.name] = tuple(d.dim_value for d in tensor.shape.dim)
    return shapes


def _element_types(model: onnx.ModelProto) -> dict[str, int]:
    graph = model.graph
    types = {i.name: i.data_type for i in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
            types[value.name] = value.type.tensor_type.elem_type
    return types


def from_onnx(model: onnx.ModelProto) -> Graph:
    model = sanitized_onnx(model)  # from here on, every name is a derived identifier
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    graph = model.graph
    n_nodes = len(graph.node)
    if n_nodes > limits.MAX_NODES:
        raise UnsupportedModelError(f"cpp: the graph has {n_nodes:,} nodes; the limit is {limits.MAX_NODES:,} (yukti.limits.MAX_NODES)")
    constants: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    graph_inputs = [v.name for v in graph.input if v.name not in constants]
    for value in graph.input:
        if value.name in graph_inputs and value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise UnsupportedModelError(f"cpp: graph input {value.name!r} is not float32; generated C++ takes float32 inputs")
    try:  # sizes first, from inference that computes no values: a tiny file may describe gigabytes
        plain = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise UnsupportedModelError(f"cpp: ONNX shape inference failed: {exc}") from exc
    limits.check_bounds(plain, what="cpp")
    types = _element_types(plain)
    # refused by codegen once every emitter has had its say (an emitter's refusal names more)
    other_outputs = {v.name: str(helper.tensor_dtype_to_np_dtype(k)) for v in graph.output
                     if (k := v.type.tensor_type.elem_type or types.get(v.name, onnx.TensorProto.FLOAT)) != onnx.TensorProto.FLOAT}
    propagate = limits.data_propagation_is_bounded(plain)
    one, two = _with_batch(model, 1, data_prop=propagate), _with_batch(model, 2, data_prop=propagate)
    folded_bytes = sum(int(a.nbytes) for a in constants.values())

    values: dict[str, Value] = {}
    for name in graph_inputs:
        values[name] = Value(name, one[name][1:], batched=True)
    for name, array in constants.items():
        values[name] = Value(name, tuple(array.shape), batched=False, const=array)

    alias: dict[str, str] = {}  # outputs of removed nodes -> their input
    symbolic: dict[str, np.ndarray] = {}  # shape values known but for the batch size (None in them)
    merged: dict[str, int] = {}  # batched tensors whose ONNX leading dimension is batch * k -> k (IR shape (k, ...))

    def full_shape(name: str, batch: int) -> tuple[int, ...]:
        """The ONNX shape of a batched value at `batch`."""
        shape = values[name].shape
        return (batch * shape[0], *shape[1:]) if name in merged else (batch, *shape)

    nodes: list[Node] = []
    for index, proto in enumerate(graph.node):
        name = proto.name or f"{proto.op_type}_{index}"
        if proto.domain not in ("", "ai.onnx"):
            raise UnsupportedModelError(f"cpp: operator {proto.domain}.{proto.op_type} (node {name}) is not in the ONNX domain")
        inputs = [alias.get(i, i) for i in proto.input]
        attrs = _attributes(proto)
        shape_of_batched = proto.op_type == "Shape" and inputs[0] in values and values[inputs[0]].batched
        if shape_of_batched and inputs[0] in merged:
            raise _merged_refusal(name, "Shape", inputs[0], merged[inputs[0]], "its shape holds batch * k, no per-sample value")
        if proto.op_type in SHAPE_VALUE_OPS and (shape_of_batched or (
                any(i in symbolic for i in inputs if i) and all(i in constants or i in symbolic for i in inputs if i))):
            result = np.asarray(_fold_symbolic(proto, inputs, constants, symbolic, values), dtype=object)
            if result.ndim == 0:  # np.take of a scalar index gives the element itself
                result = np.empty((), dtype=object)
                result[()] = _fold_symbolic(proto, inputs, constants, symbolic, values)
            if result.size > limits.MAX_TENSOR_ELEMENTS:
                raise UnsupportedModelError(f"cpp: shape value of node {name} is too large ({result.size:,} elements)")
            out = proto.output[0]
            if any(v is None for v in result.reshape(-1)):
                symbolic[out] = result
                static = np.array([-1 if v is None else int(v) for v in result.reshape(-1)], np.int64).reshape(result.shape)
                values[out] = Value(out, tuple(result.shape), False, static)
            else:  # the batch size dropped out (Gather of a per-sample dimension): an ordinary constant
                constants[out] = np.array(result.tolist(), dtype=np.int64)
                values[out] = Value(out, tuple(result.shape), False, constants[out])
            continue
        uses_batch = [i for i in inputs if i in symbolic]
        if uses_batch:
            target = symbolic.get(inputs[1]) if proto.op_type == "Reshape" and len(inputs) > 1 else None
            reshapes_batch = (target is not None and inputs[1:2] == uses_batch and target.ndim == 1 and len(target)
                              and target[0] is None and not any(v is None for v in target[1:])
                              and inputs[0] in values and values[inputs[0]].batched)
            if reshapes_batch:
                # the target is [batch, ...]: the same as [-1, per-sample shape] (from inference, or
                # the target at batch 1 where data propagation did not follow the arithmetic)
                static_name = f"{inputs[1]}_static{index}"
                rest = one[proto.output[0]][1:] if proto.output[0] in one else _reshaped(
                    full_shape(inputs[0], 1), np.array([1, *target[1:]], np.int64), bool(attrs.get("allowzero", 0)), name)[1:]
                static = np.array([-1, *rest], np.int64)
                values[static_name] = Value(static_name, tuple(static.shape), False, static)
                inputs = [inputs[0], static_name, *inputs[2:]]
            else:
                raise UnsupportedModelError(
                    f"cpp: node {name} ({proto.op_type}) takes {uses_batch[0]!r}, a value computed from the batch size; "
                    "only a Reshape's target shape may depend on it")
        if proto.op_type == "Constant":
            folded_bytes += _check_fold_size(proto, name, [], constants, one, folded_bytes)
            (array,) = _fold(proto, {}, opset)
            values[proto.output[0]] = Value(proto.output[0], tuple(np.shape(array)), False, np.asarray(array))
            constants[proto.output[0]] = np.asarray(array)
            continue
        if proto.op_type == "Dropout":
            _check_inference_dropout(proto, name, inputs, constants)
        if proto.op_type in REMOVED_OPS:
            if len(proto.output) > 1 and proto.output[1]:
                used = any(proto.output[1] in n.input for n in graph.node) or proto.output[1] in [o.name for o in graph.output]
                if used:
                    raise UnsupportedModelError(f"cpp: the mask output of Dropout node {name} is used; inference has no mask")
            alias[proto.output[0]] = inputs[0]
            continue
        if all(i in constants for i in inputs if i):
            folded_bytes += _check_fold_size(proto, name, inputs, constants, one, folded_bytes)
            folded = _fold(onnx.helper.make_node(proto.op_type, inputs, list(proto.output), domain=proto.domain, **attrs),
                           constants, opset)
            for out_name, array in zip(proto.output, folded):
                constants[out_name] = np.asarray(array)
                values[out_name] = Value(out_name, tuple(np.shape(array)), False, np.asarray(array))
            continue
        outputs = [o for o in proto.output if o]
        if proto.op_type == "Reshape" and proto.output[0] not in one and len(inputs) > 1 and inputs[1] in values \
                and values[inputs[1]].const is not None and inputs[0] in values and values[inputs[0]].batched:
            # a target folded here (shape arithmetic) that ONNX's data propagation did not follow
            for batch, shapes in ((1, one), (2, two)):
                shapes[proto.output[0]] = _reshaped(full_shape(inputs[0], batch), values[inputs[1]].const,
                                                    bool(attrs.get("allowzero", 0)), name)
        elif any(o not in one or o not in two for o in outputs) and all(i in values for i in inputs if i):
            # inputs computed from folded values: infer this node alone, from the shapes known here
            consts = {i: values[i].const for i in inputs if i and not values[i].batched}
            for batch, shapes in ((1, one), (2, two)):
                full = {i: full_shape(i, batch) for i in inputs if i and values[i].batched}
                found = _infer_node(proto, inputs, attrs, full, types, consts, opset)
                shapes.update({o: s for o, s in found.items() if o not in shapes})
        out_rows: dict[str, int] = {}
        for out_name in outputs:
            if out_name not in one or out_name not in two:
                raise UnsupportedModelError(f"cpp: shape inference gives no static shape for tensor {out_name!r} (node {name}, {proto.op_type})")
            s1, s2 = one[out_name], two[out_name]
            if s1 and s1[0] == 1 and s2[0] == 2 and s1[1:] == s2[1:]:
                out_rows[out_name] = 1
            elif s1 and s1[0] > 1 and len(s2) == len(s1) and s2[0] == 2 * s1[0] and s1[1:] == s2[1:] \
                    and (proto.op_type in MERGING_OPS or any(i in merged for i in inputs)):
                out_rows[out_name] = s1[0]  # [batch * k, ...]: per-row operators may keep it, see _rows_node
            else:
                raise UnsupportedModelError(
                    f"cpp: tensor {out_name!r} of node {name} ({proto.op_type}) does not keep the batch as its leading "
                    f"dimension (shape {s1} at batch 1, {s2} at batch 2); generated C++ needs per-sample shapes"
                )
        if any(i in merged for i in inputs) or any(k != 1 for k in out_rows.values()):
            inputs, attrs = _rows_node(proto, name, inputs, attrs, merged, out_rows, values, opset)
            if proto.op_type == "Reshape":  # the target in the IR's view: [-1, per-sample shape]
                out = proto.output[0]
                static = np.array([-1, *(one[out] if out_rows[out] != 1 else one[out][1:])], np.int64)
                static_name = f"{out}_target"
                values[static_name] = Value(static_name, tuple(static.shape), False, static)
                inputs = [inputs[0], static_name, *inputs[2:]]
        for out_name, rows in out_rows.items():
            if rows == 1:
                values[out_name] = Value(out_name, one[out_name][1:], batched=True)
            else:
                merged[out_name] = rows
                values[out_name] = Value(out_name, one[out_name], batched=True)
        nodes.append(Node(proto.op_type, name, inputs, list(proto.output), attrs))

    outputs = []
    for value in graph.output:
        source = alias.get(value.name, value.name)
        if source in values and not values[source].batched:
            raise UnsupportedModelError(f"cpp: graph output {value.name!r} is a constant; nothing to compute")
        if source in merged:
            raise UnsupportedModelError(f"cpp: graph output {value.name!r} merges the batch with {merged[source]} rows of each "
                                        "sample in its leading dimension; generated C++ returns [batch, ...] outputs")
        if source in graph_inputs or source != value.name:
            # an output that is an input (or an alias of one): copy it through an explicit node
            nodes.append(Node("Identity", f"copy_{value.name}", [source], [value.name]))
            values[value.name] = Value(value.name, values[source].shape, True)
        outputs.append(value.name)
    return Graph(graph_inputs, outputs, values, nodes, opset, other_outputs)
