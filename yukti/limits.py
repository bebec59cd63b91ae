"""Documented limits on what Yukti will analyse: a small model file must not cost unbounded memory.

A model file is untrusted input, and a kilobyte of ONNX can describe gigabytes: thirty chained
Concat nodes double a constant thirty times, and constant folding (ours in runners/cpp, qonnx's for
hls4ml) would materialise every step. So the sizes ONNX shape inference gives are checked against
these limits *before* anything is folded, converted or compiled, and the refusal names the node
that crossed a limit. The limits sit far above the networks Yukti is for (trigger-size models have
thousands to millions of parameters) and far below what would exhaust a worker node.
"""

from __future__ import annotations

import math

import onnx

from yukti.errors import UnsupportedModelError

MAX_NODES = 100_000  # nodes in the graph (with subgraphs)
MAX_TENSOR_ELEMENTS = 1 << 26  # elements of one tensor (per sample for batched ones): 256 MiB as float32
MAX_TENSOR_BYTES = 1 << 28  # bytes of one tensor (per sample for batched ones), for any element type
MAX_CONSTANT_BYTES = 1 << 30  # initializers plus everything computable from them, all together
MAX_GENERATED_SOURCE_BYTES = 64 << 20  # generated C++ text (weights included), per model
# ONNX shape inference with data propagation materialises the values of 0-D and 1-D tensors as
# protobuf dimensions (a 2 KB chain of Concat nodes took gigabytes): it runs only below this size.
MAX_PROPAGATED_ELEMENTS = 1 << 20


def _elements(shape: onnx.TensorShapeProto) -> int | None:
    """Elements per sample: the product of the numeric dimensions (a symbolic one, the batch, counts 1)."""
    total = 1
    for dim in shape.dim:
        if dim.HasField("dim_value"):
            if dim.dim_value < 0:
                return None
            total *= dim.dim_value
    return total


def _itemsize(elem_type: int) -> int:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize
    except Exception:  # undefined or exotic element types: count as the widest scalar
        return 8


def check_bounds(inferred: onnx.ModelProto, *, what: str = "model") -> None:
    """Raise UnsupportedModelError when `inferred` (a model after ONNX shape inference) holds more
    nodes than MAX_NODES, or a tensor whose inferred size passes MAX_TENSOR_ELEMENTS/BYTES, or
    constants (initializers and values computed from them alone) over MAX_CONSTANT_BYTES."""
    graph = inferred.graph
    n_nodes = _count_nodes(graph)
    if n_nodes > MAX_NODES:
        raise UnsupportedModelError(f"{what} has {n_nodes:,} nodes; Yukti analyses at most {MAX_NODES:,} (yukti.limits.MAX_NODES)")
    types = {v.name: v.type.tensor_type for v in (*graph.input, *graph.value_info, *graph.output)
             if v.type.HasField("tensor_type")}
    constant: set[str] = set()
    constant_bytes = 0
    for tensor in graph.initializer:
        constant.add(tensor.name)
        constant_bytes += math.prod(tensor.dims) * _itemsize(tensor.data_type)
    if constant_bytes > MAX_CONSTANT_BYTES:
        raise UnsupportedModelError(f"{what}: initializers hold {constant_bytes:,} bytes; the limit is {MAX_CONSTANT_BYTES:,} "
                                    "(yukti.limits.MAX_CONSTANT_BYTES)")
    for index, node in enumerate(graph.node):
        folds = all(name in constant for name in node.input if name)
        for name in node.output:
            tensor_type = types.get(name)
            if tensor_type is None or not tensor_type.HasField("shape"):
                continue
            elements = _elements(tensor_type.shape)
            if elements is None:
                continue
            size = elements * _itemsize(tensor_type.elem_type)
            label = f"node {node.name or '#' + str(index)!r} ({node.op_type}), output {name!r}"
            if elements > MAX_TENSOR_ELEMENTS or size > MAX_TENSOR_BYTES:
                raise UnsupportedModelError(
                    f"{what}: {label} would hold {elements:,} elements ({size:,} bytes) per sample; the limits are "
                    f"{MAX_TENSOR_ELEMENTS:,} elements and {MAX_TENSOR_BYTES:,} bytes (yukti.limits)")
            if folds:
                constant.add(name)
                constant_bytes += size
                if constant_bytes > MAX_CONSTANT_BYTES:
                    raise UnsupportedModelError(
                        f"{what}: constants computed up to {label} reach {constant_bytes:,} bytes; the limit is "
                        f"{MAX_CONSTANT_BYTES:,} (yukti.limits.MAX_CONSTANT_BYTES)")


def data_propagation_is_bounded(inferred: onnx.ModelProto) -> bool:
    """True when no 0-D/1-D tensor of `inferred` (plain shape inference, no data propagation) holds
    more than MAX_PROPAGATED_ELEMENTS elements, or has a size inference could not tell."""
    graph = inferred.graph
    for value in (*graph.value_info, *graph.output):
        tensor_type = value.type.tensor_type
        if not value.type.HasField("tensor_type") or not tensor_type.HasField("shape") or len(tensor_type.shape.dim) > 1:
            continue
        elements = _elements(tensor_type.shape)
        if elements is None or any(not d.HasField("dim_value") for d in tensor_type.shape.dim) or elements > MAX_PROPAGATED_ELEMENTS:
            return False
    return True


def _count_nodes(graph: onnx.GraphProto) -> int:
    total = 0
    for node in graph.node:
        total += 1
        for attribute in node.attribute:
            if attribute.HasField("g"):
                total += _count_nodes(attribute.g)
            for sub in attribute.graphs:
                total += _count_nodes(sub)
    return total
