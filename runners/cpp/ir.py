"""ONNX graph -> the small IR the emitters read.

Every activation tensor has a free leading batch dimension and static per-sample dimensions; the
per-sample shapes are found by running ONNX shape inference twice, at batch 1 and batch 2, and
keeping what scales with the batch. Values computed only from initializers are folded into
constants (one-node reference evaluation). Identity and inference-time Dropout are removed.

The model file is untrusted: the IR is built from `yukti.safe_names.sanitized_onnx(model)`, so every
node and tensor name the emitters can see is a derived identifier, never a raw string from the file,
and folding refuses (before allocating) a constant larger than `yukti.limits` allows.
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
    propagate = limits.data_propagation_is_bounded(plain)
    one, two = _with_batch(model, 1, data_prop=propagate), _with_batch(model, 2, data_prop=propagate)
    folded_bytes = sum(int(a.nbytes) for a in constants.values())

    values: dict[str, Value] = {}
    for name in graph_inputs:
        values[name] = Value(name, one[name][1:], batched=True)
    for name, array in constants.items():
        values[name] = Value(name, tuple(array.shape), batched=False, const=array)

    alias: dict[str, str] = {}  # outputs of removed nodes -> their input
    nodes: list[Node] = []
    for index, proto in enumerate(graph.node):
        name = proto.name or f"{proto.op_type}_{index}"
        if proto.domain not in ("", "ai.onnx"):
            raise UnsupportedModelError(f"cpp: operator {proto.domain}.{proto.op_type} (node {name}) is not in the ONNX domain")
        inputs = [alias.get(i, i) for i in proto.input]
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
            folded = _fold(onnx.helper.make_node(proto.op_type, inputs, list(proto.output), domain=proto.domain, **_attributes(proto)),
                           constants, opset)
            for out_name, array in zip(proto.output, folded):
                constants[out_name] = np.asarray(array)
                values[out_name] = Value(out_name, tuple(np.shape(array)), False, np.asarray(array))
            continue
        for out_name in proto.output:
            if not out_name:
                continue
            if out_name not in one or out_name not in two:
                raise UnsupportedModelError(f"cpp: shape inference gives no static shape for tensor {out_name!r} (node {name}, {proto.op_type})")
            s1, s2 = one[out_name], two[out_name]
            if not s1 or s1[0] != 1 or s2[0] != 2 or s1[1:] != s2[1:]:
                raise UnsupportedModelError(
                    f"cpp: tensor {out_name!r} of node {name} ({proto.op_type}) does not keep the batch as its leading "
                    f"dimension (shape {s1} at batch 1, {s2} at batch 2); generated C++ needs per-sample shapes"
                )
            values[out_name] = Value(out_name, s1[1:], batched=True)
        nodes.append(Node(proto.op_type, name, inputs, list(proto.output), _attributes(proto)))

    outputs = []
    for value in graph.output:
        source = alias.get(value.name, value.name)
        if source in values and not values[source].batched:
            raise UnsupportedModelError(f"cpp: graph output {value.name!r} is a constant; nothing to compute")
        if source in graph_inputs or source != value.name:
            # an output that is an input (or an alias of one): copy it through an explicit node
            nodes.append(Node("Identity", f"copy_{value.name}", [source], [value.name]))
            values[value.name] = Value(value.name, values[source].shape, True)
        outputs.append(value.name)
    return Graph(graph_inputs, outputs, values, nodes, opset)
