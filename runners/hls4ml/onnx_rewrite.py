"""ONNX rewrites that let hls4ml's ONNX frontend convert a per-particle network (DeepSets).

A DeepSets tagger is an MLP applied to every particle of a (particles, features) input, a mean over
the particles, and an MLP on that mean. hls4ml converts it from Keras (Dense on a rank-3 input
becomes a pointwise Conv1D; GlobalAveragePooling1D is the mean), but its ONNX frontend does not:

- qonnx's batch-size change (cleanup_model(override_inpsize=1)) rewrites the first entry of every
  Reshape target as the batch size, so tf2onnx's Tensordot pattern for a Dense on a rank-3 input,
  Reshape(x, [-1, K]) -> MatMul -> Reshape(back), becomes Reshape(x, [1, K]): a wrong graph.
  `for_qonnx` folds that pattern into one rank-3 MatMul first.
- hls4ml's MatmulConstToDense sizes a Dense on a rank-3 input by the whole tensor (n_in = 16 * 3,
  n_out = 16 * 32 for (16, 3) x (3, 32)), and the pointwise convolution it becomes then computes
  512 filters (measured: argmax agreement 0.63 with onnxruntime). Its Conv handler sizes a 1x1
  convolution per position correctly, so `for_qonnx` writes a rank-3/4 MatMul by a constant as
  Transpose -> Conv(1x1) -> Transpose, with a following bias Add folded into the Conv; qonnx's
  channels-last pass then cancels the transposes. The result is the Keras path's pointwise Conv1D.
- hls4ml has no ONNX handler for ReduceMean. The mean over the particle axis of a (batch, particles,
  channels) tensor is hls4ml's GlobalAveragePooling1D (channels-last); its own ONNX
  GlobalAveragePool handler reads a rank-3 input as channels-first, so `hls4ml_view` renames such a
  ReduceMean to an op of ours whose handler (registered with hls4ml once) builds that layer.

The rewritten graph computes what the original computes (the same products and sums per output,
with the bias added once), and the graph hls4ml reads differs from the cleaned one only in the
ReduceMean nodes it renames, so float activations and diagnoses still come from a valid ONNX graph.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Bump when a rewrite here changes what hls4ml converts: part of the ONNX source's cache keys.
REVISION = 1
# The op type a particle mean is renamed to in the graph hls4ml reads: ours, so it cannot meet a
# handler hls4ml may register for ReduceMean one day.
MEAN_OP = "YuktiMeanOverPositions"


def onnx_rewrite_key(source: str) -> dict[str, int]:
    """The cache-key entry of these rewrites: for the ONNX source only, so that the Keras and torch
    sources' cached artifacts stay valid when they change."""
    return {"onnx_rewrite": REVISION} if source == "onnx" else {}


def _dims(model: onnx.ModelProto) -> dict[str, list[Any]]:
    """Every tensor's dimensions as shape inference (with data propagation, which follows the
    Shape -> Gather -> Concat arithmetic of tf2onnx's Reshape targets) finds them."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - a graph ONNX cannot infer is left to qonnx and hls4ml as it is
        return {}
    found: dict[str, list[Any]] = {}
    graph = inferred.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):
            continue
        found[value.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
    return found


def _same_dims(a: list[Any], b: list[Any]) -> bool:
    """Equal shapes: every dimension known and equal (a size, or the same symbolic name)."""
    return len(a) == len(b) and all(x is not None and x != "" and x == y for x, y in zip(a, b))


class _Graph:
    """The graph's constants and consumers, and unique names for the tensors a rewrite adds."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.constants: dict[str, np.ndarray] = {init.name: numpy_helper.to_array(init) for init in self.graph.initializer}
        for node in self.graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = next((a for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self.constants[node.output[0]] = numpy_helper.to_array(value.t)
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in self.graph.output}
        self.taken = ({n.name for n in self.graph.node} | {t for n in self.graph.node for t in [*n.input, *n.output]}
                      | set(self.constants) | {i.name for i in self.graph.input})
        self._count = 0

    def only_consumer(self, tensor: str) -> onnx.NodeProto | None:
        """The single node reading `tensor`, when nothing else (not a graph output) does."""
        readers = self.consumers.get(tensor, [])
        return readers[0] if len(readers) == 1 and tensor not in self.outputs else None

    def fresh(self, stem: str) -> str:
        while True:
            self._count += 1
            name = f"yk_{stem}{self._count}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def add_constant(self, stem: str, value: np.ndarray) -> str:
        name = self.fresh(stem)
        self.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name


def _fold_tensordot(g: _Graph, dims: dict[str, list[Any]]) -> dict[str, list[onnx.NodeProto]]:
    """Replacements (keyed by the replaced node's first output; [] drops the node) for each
    Reshape(x, [-1, K]) -> MatMul(W[K, N]) -> Reshape whose result has x's shape but N last: one
    MatMul(x, W), the same product for every row of the last axis."""
    replace: dict[str, list[onnx.NodeProto]] = {}
    for first in g.graph.node:
        if first.op_type != "Reshape" or len(first.input) < 2:
            continue
        target = g.constants.get(first.input[1])
        x_dims = dims.get(first.input[0])
        if target is None or x_dims is None or len(x_dims) < 3 or target.size != 2:
            continue
        if int(target.ravel()[0]) != -1 or int(target.ravel()[1]) != x_dims[-1]:
            continue
        matmul = g.only_consumer(first.output[0])
        if matmul is None or matmul.op_type != "MatMul" or matmul.input[0] != first.output[0]:
            continue
        weight = g.constants.get(matmul.input[1])
        if weight is None or weight.ndim != 2 or weight.shape[0] != x_dims[-1]:
            continue
        last = g.only_consumer(matmul.output[0])
        if last is None or last.op_type != "Reshape" or last.input[0] != matmul.output[0]:
            continue
        if not _same_dims(dims.get(last.output[0], []), [*x_dims[:-1], int(weight.shape[1])]):
            continue
        folded = helper.make_node("MatMul", [first.input[0], matmul.input[1]], [last.output[0]], name=matmul.name)
        replace.update({first.output[0]: [], matmul.output[0]: [], last.output[0]: [folded]})
    return replace


def _matmul_as_conv(g: _Graph, dims: dict[str, list[Any]], matmul: onnx.NodeProto,
                    replace: dict[str, list[onnx.NodeProto]]) -> None:
    """Transpose -> 1x1 Conv (bias folded in from a following Add) -> Transpose for a MatMul of a
    rank-3/4 activation by a constant [K, N] matrix, recorded in `replace`."""
    x_name = matmul.input[0]
    weight = g.constants.get(matmul.input[1])
    x_dims = dims.get(x_name)
    if weight is None or weight.ndim != 2 or weight.dtype != np.float32 or x_name in g.constants:
        return
    if x_dims is None or len(x_dims) not in (3, 4) or x_dims[-1] != weight.shape[0]:
        return
    rank, (k, n) = len(x_dims), weight.shape
    out, bias, add = matmul.output[0], None, g.only_consumer(matmul.output[0])
    if add is not None and add.op_type == "Add" and len(add.input) == 2:
        other = g.constants.get(add.input[1] if add.input[0] == matmul.output[0] else add.input[0])
        if other is not None and other.dtype == np.float32 and other.shape == (n,):
            bias, out = other, add.output[0]
            replace[add.output[0]] = []
    spatial = rank - 2
    kernel = weight.T.reshape(n, k, *([1] * spatial))
    inputs = [g.fresh("cf"), g.add_constant("w", kernel)] + ([g.add_constant("b", bias)] if bias is not None else [])
    conv_out = g.fresh("conv")
    replace[matmul.output[0]] = [
        helper.make_node("Transpose", [x_name], [inputs[0]], perm=[0, rank - 1, *range(1, rank - 1)], name=g.fresh("tr")),
        helper.make_node("Conv", inputs, [conv_out], name=g.fresh("conv"), kernel_shape=[1] * spatial,
                         strides=[1] * spatial, pads=[0] * (2 * spatial), dilations=[1] * spatial, group=1),
        helper.make_node("Transpose", [conv_out], [out], perm=[0, *range(2, rank), 1], name=g.fresh("tr")),
    ]


def _apply(graph: onnx.GraphProto, replace: dict[str, list[onnx.NodeProto]]) -> bool:
    """Put each replacement where the node it replaces was (the order stays topological)."""
    if not replace:
        return False
    nodes = [new for node in graph.node for new in replace.get(node.output[0] if node.output else "", [node])]
    del graph.node[:]
    graph.node.extend(nodes)
    return True


def for_qonnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` (not modified) with tf2onnx's Tensordot folded and rank-3/4 MatMuls by a constant
    written as 1x1 convolutions (module docstring); the same object when there is nothing to do."""
    if not any(node.op_type == "MatMul" for node in model.graph.node):
        return model
    dims = _dims(model)
    if not dims:
        return model
    rewritten = copy.deepcopy(model)
    changed = _apply(rewritten.graph, _fold_tensordot(_Graph(rewritten), dims))
    g = _Graph(rewritten)  # consumers as they are after the folding
    replace: dict[str, list[onnx.NodeProto]] = {}
    for node in g.graph.node:
        if node.op_type == "MatMul" and node.output[0] not in replace:
            _matmul_as_conv(g, dims, node, replace)
    changed = _apply(g.graph, replace) or changed
    if not changed:
        return model
    _drop_unused(g.graph)
    del g.graph.value_info[:]  # stale for the rewritten tensors; qonnx infers them again
    return rewritten


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Remove nodes whose outputs nothing reads (the folded Tensordot's shape arithmetic) and
    initializers nothing reads (the weights the convolutions took over)."""
    while True:
        read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(out in read for out in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in read]:
        graph.initializer.remove(init)


# -- the particle mean -------------------------------------------------------------------------------


def mean_over_positions(wrapper: Any, node: onnx.NodeProto) -> tuple[int, int] | str:
    """(positions, channels) when `node`, a ReduceMean of the cleaned graph (a qonnx ModelWrapper),
    is the mean over the positions of a (batch, positions, channels) tensor without kept dims:
    hls4ml's GlobalAveragePooling1D; otherwise why it is not."""
    shape = wrapper.get_tensor_shape(node.input[0])
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    axes = attributes.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        constant = wrapper.get_initializer(node.input[1])
        if constant is None:
            return "its axes are computed, not constant"
        axes = [int(a) for a in np.asarray(constant).ravel()]
    if not shape or len(shape) != 3:
        return f"a mean of a rank-{len(shape or [])} tensor (hls4ml's global average pooling here takes (batch, positions, channels))"
    if axes is None or sorted(int(a) % 3 for a in axes) != [1]:
        return f"a mean over axes {axes if axes is not None else 'all'} (only the positions, axis 1, are a global average pooling)"
    if int(attributes.get("keepdims", 1)) != 0:
        return "a mean that keeps the reduced axis (keepdims=1)"
    return int(shape[1]), int(shape[2])


def hls4ml_view(wrapper: Any) -> Any:
    """A copy of the cleaned graph in which every particle mean is the op `MEAN_OP`, without its
    axes input (hls4ml makes a layer of every initializer, and one nothing reads breaks its
    precision inference); the same object when there is none."""
    from qonnx.core.modelwrapper import ModelWrapper

    means = [i for i, node in enumerate(wrapper.graph.node)
             if node.op_type == "ReduceMean" and isinstance(mean_over_positions(wrapper, node), tuple)]
    if not means:
        return wrapper
    register_mean_handler()
    view = ModelWrapper(copy.deepcopy(wrapper.model))
    graph = view.graph
    for index in means:
        node = graph.node[index]
        dropped = list(node.input[1:])
        del node.input[1:]
        del node.attribute[:]
        node.op_type, node.domain = MEAN_OP, ""
        read = {name for other in graph.node for name in other.input}
        for init in [i for i in graph.initializer if i.name in dropped and i.name not in read]:
            graph.initializer.remove(init)
    return view


def _mean_handler(node: Any, input_names: list[str], input_shapes: list[list[int]], graph: Any) -> dict[str, Any]:
    """hls4ml's layer for a `MEAN_OP` node: the Keras GlobalAveragePooling1D's, channels-last."""
    shape = input_shapes[0]  # with the batch dimension, as hls4ml's ONNX handlers receive it
    if len(shape) != 3:
        raise ValueError(f"{MEAN_OP} {node.name}: expected a (batch, positions, channels) input, got {shape}")
    return {"name": node.name, "class_name": "GlobalAveragePooling1D", "inputs": list(input_names[:1]),
            "outputs": list(node.output), "data_format": "channels_last", "n_in": int(shape[1]), "n_filt": int(shape[2]),
            "n_out": 1, "pad_left": 0, "pad_right": 0, "stride": 0}


def register_mean_handler() -> None:
    """Teach hls4ml's ONNX parser `MEAN_OP` (once per process; hls4ml keeps one handler table)."""
    import hls4ml.converters

    if MEAN_OP not in hls4ml.converters.get_supported_onnx_layers():
        hls4ml.converters.register_onnx_layer_handler(MEAN_OP, _mean_handler)
