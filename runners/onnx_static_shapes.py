"""Shape arithmetic folded out of an ONNX graph whose only dynamic dimension is the batch.

Exporters write a tensor's shape as a computation: torch.onnx turns `x.reshape(b, n, h, d)` into
Shape -> Gather -> Unsqueeze -> Concat -> Reshape, tf2onnx writes the same around every Tensordot.
A converter that turns each ONNX node into a module (onnx2torch) then reads those shapes as tensor
*values* at run time, which torch.export cannot trace (a data-dependent shape). With only the batch
dynamic, nearly all of those values are known ahead of time, so `static_shapes` rewrites the graph:

- every value computed from constants and static dimensions alone (a Shape of a tensor whose
  dimensions are all fixed, a Gather of a per-sample dimension, the arithmetic on them) becomes an
  initializer, and so does every Constant node: axes, starts, ends are then constants that a
  converter can read when it converts;
- a Reshape target that still depends on the batch becomes a constant where that is exact
  (`_static_target`): the one entry that depends on the batch turns into -1;
- nodes nothing reads any more are dropped.

How the batch is tracked: every graph input's leading dimension gets one symbolic name, ONNX
shape inference propagates it, and shape values are evaluated on object arrays whose elements are
integers, BATCH (exactly the batch size) or OPAQUE (depends on the batch some other way: 16 * batch,
batch // 2, an unknown dimension). Static elements are computed by ONNX's reference implementation
of the node itself, so their arithmetic is ONNX's; only elements that involve the batch follow
the rules here, which decide BATCH only where it is certain (batch * 1, batch + 0, a copy) and
OPAQUE otherwise. OPAQUE is never folded into a number, so a graph that uses the batch other than
as the leading dimension keeps computing that value at run time and stays right.

The rewritten graph computes the same outputs as the original for every batch size >= 1 at
which the original runs (a target made -1 also fits where the original target was invalid), under
Yukti's contract that all inputs share the leading batch dimension. Nothing the file names is
executed or written into code here; converters still get `yukti.safe_names.sanitized_onnx` of
the result. Folding materialises only small values (FOLD_ELEMENTS, sized by shape inference
before anything is computed), so an untrusted file cannot make this allocate much.

`lower_reduce_opset` is a second, separate rewrite for converters that lack the opset-18 form of
the Reduce operators (axes as an input); see there.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import defs, helper, numpy_helper

from yukti import limits

# A folded value holds at most this many elements: shape values are a handful; a big constant
# subgraph (weights computed from weights) is left for the runtime, which handles it anyway.
FOLD_ELEMENTS = 1 << 16
DEFAULT_DOMAINS = ("", "ai.onnx")
MAX_ROUNDS = 16


class _Symbol:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


BATCH = _Symbol("BATCH")  # exactly the batch size
OPAQUE = _Symbol("OPAQUE")  # computed from the batch size some other way, or unknown


def _is_symbolic(element: Any) -> bool:
    return element is BATCH or element is OPAQUE


class _Shaped:
    """A value known but for the batch size: an object array of ints/BATCH/OPAQUE and its dtype."""

    def __init__(self, elements: np.ndarray, dtype: np.dtype) -> None:
        self.elements = elements
        self.dtype = np.dtype(dtype)

    def placeholder(self) -> np.ndarray:
        """The array with every symbolic element replaced by 1, for computing its static neighbours."""
        flat = [1 if _is_symbolic(e) else e for e in self.elements.reshape(-1)]
        return np.array(flat, dtype=self.dtype).reshape(self.elements.shape)

    def mask(self) -> np.ndarray:
        return np.vectorize(_is_symbolic, otypes=[bool])(self.elements) if self.elements.size else np.zeros(self.elements.shape, bool)


# Ops whose output elements are copies of elements of their `data` inputs, picked by their other
# (static) inputs and attributes: evaluated on arrays of element indices, exact by construction.
MOVEMENT = {
    "Identity": (0,), "Reshape": (0,), "Squeeze": (0,), "Unsqueeze": (0,), "Flatten": (0,), "Transpose": (0,),
    "Gather": (0,), "Slice": (0,), "Expand": (0,), "Tile": (0,), "Where": (1, 2), "Concat": None,  # None: every input
}
# Ops whose output element i depends on the broadcast input elements at i alone.
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Mod", "Max", "Min", "Neg", "Abs", "Cast", "Equal", "Less", "Greater",
               "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Floor", "Ceil", "Sign"}
# Ops whose output elements each depend on several input elements (their shape on none).
REDUCTIONS = {"ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceMean"}
# Folding these when all inputs are constant is exact in any dtype (they copy or convert values);
# other ops are folded only when their outputs are integers or booleans, i.e. shape arithmetic,
# so float results stay exactly what the runtime computes.
EXACT_FOLDS = set(MOVEMENT) | {"Cast", "Shape", "Size", "ConstantOfShape"}
NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
# Cast targets that hold any batch size as it is (float32 is exact below 2**24 samples per call).
_VALUE_KEEPING_CASTS = {onnx.TensorProto.INT32, onnx.TensorProto.INT64, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64,
                        onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE}


def default_opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), default=1)


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Known:
    """Values known before run time: initializers (read on first use: weights are never needed
    here), folded values and `_Shaped` ones. An initializer that is also a graph input is a default
    the caller may override, not a constant."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        overridable = {v.name for v in graph.input}
        self._protos = {t.name: t for t in graph.initializer if t.name not in overridable}
        self._values: dict[str, Any] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._values or name in self._protos

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            self._values[name] = numpy_helper.to_array(self._protos[name])
        return self._values[name]

    def shaped(self, name: str) -> bool:
        return isinstance(self._values.get(name), _Shaped)

    def __setitem__(self, name: str, value: Any) -> None:
        self._values[name] = value


class _NotEvaluated(Exception):
    """ONNX's reference implementation could not evaluate a node: it is then simply not folded."""


def _run_node(node: onnx.NodeProto, arrays: list[np.ndarray | None], opset: int) -> list[np.ndarray]:
    """`node` evaluated by ONNX's reference implementation on `arrays` (None: an omitted input)."""
    from onnx.reference import ReferenceEvaluator

    names = [f"i{k}" if a is not None else "" for k, a in enumerate(arrays)]
    outputs = [f"o{k}" for k in range(len(node.output))]
    single = helper.make_node(node.op_type, names, outputs, domain=node.domain)
    single.attribute.extend(node.attribute)
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for n, a in zip(names, arrays) if a is not None]
    graph = helper.make_graph([single], "fold", inputs, [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outputs])
    try:
        evaluator = ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
        return [np.asarray(r) for r in evaluator.run(None, {n: a for n, a in zip(names, arrays) if a is not None})]
    except Exception as exc:  # noqa: BLE001 - an op or dtype it lacks, an invalid node: many types
        raise _NotEvaluated(f"{node.op_type}: {exc}") from exc


def _inferred_shapes(model: onnx.ModelProto, symbol: str) -> tuple[dict[str, tuple[Any, ...]], dict[str, int]] | None:
    """Shape (ints, BATCH for `symbol`, OPAQUE for any other or unknown dimension) and element type
    of every value ONNX shape inference can type; None when inference fails on this graph."""
    # A copy without the big initializers (weights): inference needs only their types and shapes,
    # given as inputs, and copying megabytes of weights every round would be the cost of it all.
    copy = onnx.ModelProto()
    copy.ir_version = model.ir_version
    copy.opset_import.extend(model.opset_import)
    copy.functions.extend(model.functions)
    graph = copy.graph
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    declared = {v.name for v in graph.input}
    for tensor in model.graph.initializer:
        if math.prod(tensor.dims) <= FOLD_ELEMENTS:
            graph.initializer.append(tensor)
        elif tensor.name not in declared:
            graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    for value in graph.output:  # declared output shapes may name the batch otherwise: let inference decide
        value.type.tensor_type.ClearField("shape")
    try:
        plain = onnx.shape_inference.infer_shapes(copy)
        propagate = limits.data_propagation_is_bounded(plain)
        inferred = onnx.shape_inference.infer_shapes(copy, data_prop=True) if propagate else plain
    except Exception:  # noqa: BLE001 - inference of an unusual graph fails in many ways; then nothing is folded
        return None
    shapes: dict[str, tuple[Any, ...]] = {}
    types: dict[str, int] = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        if not value.type.HasField("tensor_type"):
            continue
        tensor = value.type.tensor_type
        types[value.name] = tensor.elem_type
        if tensor.HasField("shape"):
            shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else (BATCH if d.dim_param == symbol else OPAQUE)
                                       for d in tensor.shape.dim)
    for tensor in model.graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
        types[tensor.name] = tensor.data_type
    return shapes, types


def _static(shape: tuple[Any, ...] | None) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


def _combine(op: str, attrs: dict[str, Any], elements: list[Any]) -> Any:
    """An elementwise op on elements of which at least one involves the batch: BATCH when the
    result is certainly the batch size itself, else OPAQUE."""
    if any(e is OPAQUE for e in elements):
        return OPAQUE
    if op == "Cast":
        return BATCH if attrs.get("to") in _VALUE_KEEPING_CASTS else OPAQUE
    if len(elements) == 2:
        a, b = elements
        if op == "Mul" and ((a is BATCH and b == 1) or (b is BATCH and a == 1)):
            return BATCH
        if op == "Add" and ((a is BATCH and b == 0) or (b is BATCH and a == 0)):
            return BATCH
        if op in ("Sub", "Div") and a is BATCH and b == (0 if op == "Sub" else 1):
            return BATCH
    return OPAQUE


def _evaluate_shaped(node: onnx.NodeProto, args: list[Any], opset: int) -> _Shaped | None:
    """One node on inputs of which some are `_Shaped` (the others numpy arrays or None for an
    omitted input). None: the result is not tracked (a value its consumers must compute at run time)."""
    op, attrs = node.op_type, _attributes(node)
    if len(node.output) != 1:
        return None
    if op in ("Shape", "Size"):  # of a shape value: its own shape is static
        shape = args[0].elements.shape
        if op == "Size":
            return _Shaped(np.array(math.prod(shape), dtype=object), np.int64)
        rank = len(shape)
        start, end = attrs.get("start", 0), attrs.get("end", rank)
        start, end = (max(0, min(rank, s + rank if s < 0 else s)) for s in (start, end))
        return _Shaped(np.array(list(shape[start:end]), dtype=object), np.int64)
    if op in MOVEMENT:
        data = MOVEMENT[op] or tuple(range(len(args)))
        if any(isinstance(a, _Shaped) for k, a in enumerate(args) if k not in data):
            return None  # an index, axis or target shape that involves the batch
        pool: list[Any] = []
        index_args: list[Any] = []
        dtype = next(a.dtype for a in args if isinstance(a, _Shaped))
        for k, arg in enumerate(args):
            if k in data and arg is not None:
                elements = arg.elements if isinstance(arg, _Shaped) else np.asarray(arg).astype(object)
                index_args.append(np.arange(len(pool), len(pool) + elements.size, dtype=np.int64).reshape(elements.shape))
                pool.extend(elements.reshape(-1))
            else:
                index_args.append(arg)
        (picked,) = _run_node(node, index_args, opset)
        flat = np.empty(picked.size, dtype=object)
        flat[:] = [pool[int(i)] for i in picked.reshape(-1)]
        return _Shaped(flat.reshape(picked.shape), dtype)
    if op in ELEMENTWISE:
        placeholders = [a.placeholder() if isinstance(a, _Shaped) else a for a in args]
        (static,) = _run_node(node, placeholders, opset)
        grids = np.broadcast_arrays(*[a.elements if isinstance(a, _Shaped) else np.asarray(a).astype(object) for a in args])
        result = static.astype(object)
        for position in np.ndindex(static.shape):
            column = [g[position] for g in grids]
            if any(_is_symbolic(e) for e in column):
                result[position] = _combine(op, attrs, column)
            else:
                result[position] = static[position].item()
        return _Shaped(result, static.dtype)
    if op in REDUCTIONS and not any(isinstance(a, _Shaped) for a in args[1:]):
        (static,) = _run_node(node, [a.placeholder() if isinstance(a, _Shaped) else a for a in args], opset)
        result = np.empty(static.shape, dtype=object)
        result[...] = OPAQUE  # conservative: which inputs reached which output is not tracked
        return _Shaped(result, static.dtype)
    return None


def _static_target(target: _Shaped, data_shape: tuple[Any, ...] | None, allowzero: bool) -> np.ndarray | None:
    """A constant Reshape target equal to `target` for every batch size >= 1, or None.

    Two exact cases. (1) One entry depends on the batch and every other entry is a known positive
    size (a 0 that copies an input dimension counts as that dimension): a valid reshape keeps the
    element count, which then fixes that entry, so -1 (infer it) is the same target. Covers torch's
    [batch, n, h, d] and a flattened [16 * batch, 3] alike. (2) [batch, ..., -1, ...] on an input of
    shape [batch, static...]: the -1 is the per-sample size over the other entries, a number."""
    if target.elements.ndim != 1 or not np.issubdtype(target.dtype, np.integer):
        return None
    resolved: list[Any] = []
    for i, entry in enumerate(target.elements):
        if not _is_symbolic(entry) and int(entry) == 0 and not allowzero:
            if data_shape is None or i >= len(data_shape):
                return None
            entry = data_shape[i]  # 0 copies the input's dimension: the batch, too, at position 0
        resolved.append(entry if _is_symbolic(entry) else int(entry))
    dynamic = [i for i, e in enumerate(resolved) if _is_symbolic(e)]
    others = [e for e in resolved if not _is_symbolic(e)]
    if len(dynamic) != 1:
        return None
    if all(e > 0 for e in others):
        return np.array([-1 if _is_symbolic(e) else e for e in resolved], np.int64)
    per_sample = data_shape[1:] if data_shape else None
    if (dynamic == [0] and resolved[0] is BATCH and others.count(-1) == 1 and all(e > 0 for e in others if e != -1)
            and data_shape and data_shape[0] is BATCH and _static(per_sample)):
        known = math.prod(e for e in others if e != -1)
        if math.prod(per_sample) % known:
            return None
        return np.array([-1, *[math.prod(per_sample) // known if e == -1 else e for e in resolved[1:]]], np.int64)
    return None


def _used_names(graph: onnx.GraphProto) -> set[str]:
    """Every value name a node reads, subgraphs included (they may read the outer scope)."""
    used: set[str] = set()
    for node in graph.node:
        used.update(n for n in node.input if n)
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                used |= _used_names(sub)
    return used


def _fold_round(model: onnx.ModelProto, symbol: str, taken: set[str]) -> bool:
    """One pass in graph order; True when it changed the graph (a fold opens the next)."""
    inferred = _inferred_shapes(model, symbol)
    if inferred is None:
        return False
    shapes, types = inferred
    graph, opset = model.graph, default_opset(model)
    known = _Known(graph)
    graph_outputs = {o.name for o in graph.output}
    folded: dict[str, np.ndarray] = {}  # output -> value, their nodes to be removed
    changed = False
    for node in graph.node:
        if node.domain not in DEFAULT_DOMAINS or any(a.HasField("g") or a.graphs for a in node.attribute):
            continue
        try:
            target = _evaluate(node, shapes, types, known, opset, graph_outputs, folded)
        except _NotEvaluated:
            continue
        if target is not None:  # a Reshape whose target becomes a constant
            name = _fresh(f"{node.input[1]}_static", taken)
            graph.initializer.append(numpy_helper.from_array(target, name))
            known[name] = target
            node.input[1] = name
            changed = True
    if folded:
        kept = [n for n in graph.node if not any(o in folded for o in n.output)]
        del graph.node[:]
        graph.node.extend(kept)
        existing = {t.name for t in graph.initializer}
        graph.initializer.extend(numpy_helper.from_array(np.asarray(v), n) for n, v in folded.items() if n not in existing)
        changed = True
    return changed


def _evaluate(node: onnx.NodeProto, shapes: dict[str, tuple[Any, ...]], types: dict[str, int], known: _Known,
              opset: int, graph_outputs: set[str], folded: dict[str, np.ndarray]) -> np.ndarray | None:
    """Evaluate `node` into `known`, and into `folded` when its outputs become initializers.
    Returns the new constant target of a Reshape whose target depends on the batch, where one is
    exact; else None. Raises _NotEvaluated when the reference implementation fails."""
    outputs = [o for o in node.output if o]
    if node.op_type == "Constant":
        (value,) = _run_node(node, [], opset)
        known[node.output[0]] = value
        if node.output[0] not in graph_outputs:
            folded[node.output[0]] = value
        return None
    inputs = list(node.input)
    if node.op_type in ("Shape", "Size") and inputs[0] not in known:  # of an activation: from inference
        shape = shapes.get(inputs[0])
        if shape is None:
            return None
        if node.op_type == "Size":
            value = _Shaped(np.array(math.prod(shape) if _static(shape) else OPAQUE, dtype=object), np.int64)
        else:
            rank = len(shape)
            attrs = _attributes(node)
            start, end = (max(0, min(rank, s + rank if s < 0 else s)) for s in (attrs.get("start", 0), attrs.get("end", rank)))
            elements = np.empty(max(0, end - start), dtype=object)
            elements[:] = list(shape[start:end])
            value = _Shaped(elements, np.int64)
    elif node.op_type == "Reshape" and inputs[0] not in known:
        if len(inputs) < 2 or not known.shaped(inputs[1]):
            return None  # a constant target already, or one computed from activations
        return _static_target(known[inputs[1]], shapes.get(inputs[0]), bool(_attributes(node).get("allowzero", 0)))
    elif any(name and name not in known for name in inputs):
        return None  # reads an activation (only now are weights and other constants read)
    elif not any(known.shaped(name) for name in inputs if name):  # every input a constant
        if not _foldable(node, outputs, shapes, types):  # before reading any input
            return None
        values = _run_node(node, [known[name] if name else None for name in inputs], opset)
        for name, array in zip(node.output, values):
            if name:
                known[name] = array
        if not set(outputs) & graph_outputs:
            folded.update({name: array for name, array in zip(node.output, values) if name})
        return None
    else:
        if not all(_static(shapes.get(o)) and math.prod(shapes[o]) <= FOLD_ELEMENTS for o in outputs):
            return None  # sized before anything is computed, as folds are
        value = _evaluate_shaped(node, [known[name] if name else None for name in inputs], opset)
        if value is None:
            return None
    if isinstance(value, _Shaped) and not value.mask().any():  # the batch dropped out: a plain constant
        value = np.array(value.elements.tolist(), dtype=value.dtype).reshape(value.elements.shape)
    known[node.output[0]] = value
    if isinstance(value, np.ndarray) and node.output[0] not in graph_outputs:
        folded[node.output[0]] = value
    return None


def _foldable(node: onnx.NodeProto, outputs: list[str], shapes: dict[str, tuple[Any, ...]], types: dict[str, int]) -> bool:
    """Fold a node of constants only when its outputs' sizes are known small (checked before
    anything is computed) and folding is exact: shape arithmetic in integers, or a copy."""
    if node.op_type in NONDETERMINISTIC:
        return False
    for name in outputs:
        if not _static(shapes.get(name)) or math.prod(shapes[name]) > FOLD_ELEMENTS:
            return False
    if node.op_type in EXACT_FOLDS:
        return True
    integral = {onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64,
                onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64,
                onnx.TensorProto.BOOL}
    return all(types.get(name) in integral for name in outputs)


def _fresh(base: str, taken: set[str]) -> str:
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _all_names(model: onnx.ModelProto) -> set[str]:
    graph = model.graph
    names = {v.name for v in (*graph.input, *graph.output, *graph.value_info)} | {t.name for t in graph.initializer}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    return names | _used_names(graph)


def _drop_dead(model: onnx.ModelProto) -> None:
    """Remove nodes whose outputs nothing reads, then initializers nothing reads (inputs stay)."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    while True:
        used = _used_names(graph) | outputs
        live = [n for n in graph.node if any(o in used for o in n.output if o)]
        if len(live) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(live)
    used = _used_names(graph) | outputs | {i.name for i in graph.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    names = used | {n for node in graph.node for n in node.output}
    info = [v for v in graph.value_info if v.name in names]
    del graph.value_info[:]
    graph.value_info.extend(info)


def static_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with its shape arithmetic folded (module docstring): the same outputs for
    every batch size >= 1 at which the original runs. Graphs ONNX shape inference cannot handle come back unchanged but for
    their Constant nodes and dead nodes."""
    work = onnx.ModelProto()
    work.CopyFrom(model)
    graph = work.graph
    taken = _all_names(work)
    params = {d.dim_param for v in (*graph.input, *graph.output, *graph.value_info)
              for d in v.type.tensor_type.shape.dim if d.dim_param}
    symbol = _fresh("yukti_batch", set(params))
    saved = [onnx.ValueInfoProto() for _ in graph.input]
    initializers = {t.name for t in graph.initializer}
    for keep, value in zip(saved, graph.input):
        keep.CopyFrom(value)
        dims = value.type.tensor_type.shape.dim
        if value.name not in initializers and dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_param = symbol  # one name for every input's batch: Yukti's inputs share it
    # Each round folds what the previous one made static (a Reshape given a constant target has a
    # static output shape next round). Exporters' graphs settle in two or three; the cap bounds
    # the work a crafted chain can ask for, and stopping early leaves a correct, less folded graph.
    for _ in range(MAX_ROUNDS):
        if not _fold_round(work, symbol, taken):
            break
    for value, keep in zip(graph.input, saved):
        value.CopyFrom(keep)
    _drop_dead(work)
    return work


# The opset-18 Reduce operators take their axes as an input; their opset-13 forms (ReduceSum:
# opset 13 already) as an attribute.
_REDUCE_WITH_AXES_ATTRIBUTE = {"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                               "ReduceMin", "ReduceProd", "ReduceSumSquare"}
_LOWERED_OPSET = 17


def lower_reduce_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` at opset 17 with its Reduce nodes' constant axes inputs as attributes, when that is
    exact; else `model` itself.

    onnx2torch (1.5) has no converter for the opset-18 Reduce forms, which torch.onnx writes for
    every mean. Exactness: a node's meaning is its schema at the model's opset; when every other
    node's schema was introduced at opset 17 or earlier, it is also the schema at opset 17, so
    lowering the opset changes nothing for them, and a Reduce node with constant axes is the same
    computation in its opset-13 form (axes attribute)."""
    opset = default_opset(model)
    if opset <= _LOWERED_OPSET or model.functions or any(n.domain not in DEFAULT_DOMAINS for n in model.graph.node):
        return model
    constants = _Known(model.graph)
    for node in model.graph.node:
        if any(a.HasField("g") or a.graphs for a in node.attribute):
            return model
        try:
            since = defs.get_schema(node.op_type, max_inclusive_version=opset).since_version
        except Exception:  # noqa: BLE001 - unknown op: not ours to judge
            return model
        if since <= _LOWERED_OPSET:
            continue
        axes = node.input[1] if len(node.input) > 1 else ""
        if node.op_type not in _REDUCE_WITH_AXES_ATTRIBUTE or (axes and axes not in constants) \
                or defs.get_schema(node.op_type, max_inclusive_version=_LOWERED_OPSET).since_version < 13:
            return model
    lowered = onnx.ModelProto()
    lowered.CopyFrom(model)
    for node in lowered.graph.node:
        if node.op_type not in _REDUCE_WITH_AXES_ATTRIBUTE:
            continue
        attrs = _attributes(node)
        axes_name = node.input[1] if len(node.input) > 1 else ""
        axes = [int(a) for a in constants[axes_name].reshape(-1)] if axes_name else []
        noop = bool(attrs.pop("noop_with_empty_axes", 0))
        del node.input[1:]
        del node.attribute[:]
        if not axes and noop:  # opset 18: no axes and noop_with_empty_axes -> the input as it is
            node.op_type = "Identity"
            continue
        if axes:
            attrs["axes"] = axes
        node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
    for entry in lowered.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            entry.version = _LOWERED_OPSET
    _drop_dead(lowered)
    return lowered
