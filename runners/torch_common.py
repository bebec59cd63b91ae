"""What the two torch backends (`torch` eager, `torch_aot`) share: the options they both take, which
models they can take (the original module, or the ONNX graph converted by onnx2torch), and getting
that module onto the requested device.

An ONNX graph is converted in three steps, the same for both backends:
1. `runners.onnx_static_shapes` folds the exporters' shape arithmetic (Shape/Gather/Concat feeding
   a Reshape...) into constants, and lowers opset-18 Reduce nodes to the form onnx2torch converts;
2. onnx2torch converts the sanitized result;
3. `_static_calls` replaces the onnx2torch modules that read a shape, axes or slice bounds from a
   tensor at every call (Reshape, Squeeze, Unsqueeze, Slice, Expand, Tile) by plain torch calls on
   those values, read once here from the constants of step 1. torch.export cannot trace such a
   tensor read (a data-dependent shape); eager torch saves a host round trip per call.
"""

from __future__ import annotations

import collections
import copy
import functools
import importlib
import operator
import sys
import threading
import types
from typing import Any

import numpy as np
import onnx

from yukti.errors import BackendUnavailableError
from yukti.model import Model
from yukti.options import Option
from yukti.runner import Support, import_status
from yukti.runners import onnx_static_shapes
from yukti.safe_names import sanitized_onnx

# onnx2torch imports torchvision at import time for its NonMaxSuppression and RoiAlign converters
# only; PyPI's torchvision does not load beside the CPU torch wheel these machines use. Those two
# operators are refused instead.
NEEDS_TORCHVISION = frozenset({"NonMaxSuppression", "RoiAlign"})
ORIGINAL, CONVERTED = "original module", "onnx2torch"

# Declared once for both backends.
THREADS = Option(1, type=int, minimum=1, artifact=False, doc="torch.set_num_threads: process-wide in PyTorch")
SOURCE = Option("auto", choices=("auto", "module", "onnx"), doc="the original torch module, or the ONNX graph via onnx2torch")
DEVICE = Option("cpu", choices=("cpu", "cuda"))


@functools.lru_cache(maxsize=1)
def torchvision_works() -> bool:
    return import_status("torchvision")[0]


def import_onnx2torch() -> Any:
    """onnx2torch, imported with a placeholder torchvision when the real one does not load; the
    interpreter's modules are left as they were."""
    if "onnx2torch" in sys.modules or torchvision_works():
        return importlib.import_module("onnx2torch")
    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if name == "torchvision" or name.startswith("torchvision.")}
    placeholder, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")

    def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("torchvision is not usable here; NonMaxSuppression/RoiAlign cannot be converted")

    def lookup(name: str) -> Any:
        if name.startswith("__"):  # module protocol (__file__, __path__...): inspect and importlib probe these
            raise AttributeError(name)
        return missing

    ops.__getattr__ = lookup  # type: ignore[method-assign]
    placeholder.ops = ops  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": placeholder, "torchvision.ops": ops})
    try:
        return importlib.import_module("onnx2torch")
    finally:  # leave the user's interpreter as it was
        sys.modules.pop("torchvision", None)
        sys.modules.pop("torchvision.ops", None)
        sys.modules.update(saved)


# supports() and prepare both need the rewritten graph: the last few, by model hash (serialized,
# so that no caller can change the cached copy)
_CONVERTIBLE: collections.OrderedDict[str, bytes] = collections.OrderedDict()
_CONVERTIBLE_KEPT = 4
_CONVERTIBLE_LOCK = threading.Lock()


def convertible_onnx(model: Model) -> onnx.ModelProto:
    """The graph onnx2torch converts: `model.onnx` with its shape arithmetic folded and its
    opset-18 Reduce nodes lowered where exact (runners/onnx_static_shapes.py); names still raw."""
    with _CONVERTIBLE_LOCK:
        data = _CONVERTIBLE.get(model.hash)
        if data is not None:
            _CONVERTIBLE.move_to_end(model.hash)
    if data is None:
        data = onnx_static_shapes.lower_reduce_opset(onnx_static_shapes.static_shapes(model.onnx)).SerializeToString()
        with _CONVERTIBLE_LOCK:
            _CONVERTIBLE[model.hash] = data
            while len(_CONVERTIBLE) > _CONVERTIBLE_KEPT:
                _CONVERTIBLE.popitem(last=False)
    return onnx.load_from_string(data)


def supports(model: Model) -> Support:
    """A torch module runs as it is; an ONNX graph needs a converter for every node, at the
    operator version the graph's opset selects (onnx2torch registers converters per version)."""
    if model.torch_module is not None:
        return Support(True)
    if not model.has_onnx:
        return Support(False, reason=f"no torch module and no ONNX form: {model._onnx_error}")
    try:
        import_onnx2torch()
    except Exception as exc:
        return Support(False, reason=f"converting ONNX needs onnx2torch ({type(exc).__name__}: {exc}); pip install onnx2torch")
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, get_converter  # its only listing of converters

    known = {key.operation_type for key in _CONVERTER_REGISTRY if key.domain in ("", "ai.onnx")}
    if not torchvision_works():
        known -= NEEDS_TORCHVISION
    support = Support.from_ops(model, known, "torch (onnx2torch)")
    if not support:
        return support
    graph = convertible_onnx(model)
    opset = onnx_static_shapes.default_opset(graph)
    missing = []
    for index, node in enumerate(graph.graph.node):
        try:
            get_converter(node.op_type, opset)
        except NotImplementedError:
            missing.append((node.op_type, node.name or f"#{index}"))
    if missing:
        ops = sorted({op for op, _ in missing})
        return Support(False, tuple(missing), f"onnx2torch has no converter for operator(s) {', '.join(ops)} at opset {opset}")
    return Support(True)


# Inputs that onnx2torch modules read as values (shapes, axes, bounds, sizes) at every call: when
# such an input is computed at run time, torch.export meets a data-dependent shape.
VALUE_INPUTS = {
    "Reshape": (1,), "Squeeze": (1,), "Unsqueeze": (1,), "Slice": (1, 2, 3, 4), "Expand": (1,), "Tile": (1,),
    "ConstantOfShape": (0,), "Range": (0, 1, 2), "Split": (1,), "Pad": (1, 2, 3), "Resize": (1, 2, 3), "Upsample": (1,),
    "TopK": (1,), "OneHot": (1,), "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,), "ReduceMin": (1,),
    "ReduceProd": (1,), "ReduceL1": (1,), "ReduceL2": (1,), "ReduceLogSum": (1,), "ReduceLogSumExp": (1,),
    "ReduceSumSquare": (1,),
}


def runtime_values(graph: onnx.ModelProto) -> list[tuple[str, str, str]]:
    """(op, node name, input name) of every VALUE_INPUTS input of `graph` that is not a constant."""
    constants = {t.name for t in graph.graph.initializer}
    found = []
    for index, node in enumerate(graph.graph.node):
        for position in VALUE_INPUTS.get(node.op_type, ()):
            if position < len(node.input) and node.input[position] and node.input[position] not in constants:
                found.append((node.op_type, node.name or f"#{index}", node.input[position]))
    return found


def origin(model: Model, source: str) -> str:
    """Which module `source` picks for `model`: ORIGINAL or CONVERTED."""
    if source == "module" and model.torch_module is None:
        raise ValueError(f"model {model.name!r} has no torch module (loaded from {model.source}); use source='onnx'")
    return ORIGINAL if model.torch_module is not None and source in ("auto", "module") else CONVERTED


def check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("device='cuda' but torch sees no CUDA device")


def module_on(model: Model, picked: str, device: str) -> Any:
    """The module `origin` picked, in eval mode on `device` (a copy when it has to move: the
    user's module stays where it was). torch.fx writes module names into Python source, so an ONNX
    graph is converted from its sanitized form (derived identifiers only)."""
    import torch

    if picked == ORIGINAL:
        module = model.torch_module
    else:
        module = _static_calls(import_onnx2torch().convert(sanitized_onnx(convertible_onnx(model))))
    target = torch.device(device)
    if any(t.device.type != target.type for t in [*module.parameters(), *module.buffers()]):
        module = copy.deepcopy(module).to(target)
    return module.eval()


def writeable(array: np.ndarray) -> np.ndarray:
    """`array`, copied only when read-only (np.frombuffer, a read-only memmap, a broadcast view):
    torch.from_numpy warns on those, since a tensor has no read-only flag. Inference never writes."""
    return array if array.flags.writeable else array.copy()


# ONNX semantics of the ops `_static_calls` inlines, on values known when converting. Module-level
# functions: torch.fx writes calls to them into the converted module's code by qualified name.

def onnx_reshape(x: Any, dims: tuple[int, ...]) -> Any:
    """ONNX Reshape (allowzero=0): a 0 copies the input's dimension, a -1 is inferred."""
    return x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(dims)])


def onnx_squeeze(x: Any, axes: tuple[int, ...] | None) -> Any:
    if axes is None:
        return x.squeeze()
    return x.squeeze(tuple(a % x.dim() for a in axes))


def onnx_unsqueeze(x: Any, axes: tuple[int, ...]) -> Any:
    rank = x.dim() + len(axes)  # axes index the output
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis)
    return x


def onnx_slice(x: Any, starts: tuple[int, ...], ends: tuple[int, ...], axes: tuple[int, ...] | None,
               steps: tuple[int, ...] | None) -> Any:
    axes = tuple(range(len(starts))) if axes is None else axes
    steps = (1,) * len(starts) if steps is None else steps
    index: list[Any] = [slice(None)] * x.dim()
    flips = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= x.dim()
        if step > 0:  # Python's slice clamps its bounds as ONNX does for positive steps
            index[axis] = slice(start, end, step)
            continue
        # negative step: ONNX clamps start to [0, dim-1] and end to [-1, dim-1]; walked on the
        # flipped axis, where element i sits at dim-1-i, that is a forward slice
        dim = x.shape[axis]
        start = max(0, min(start + dim if start < 0 else start, dim - 1))
        end = max(-1, min(end + dim if end < 0 else end, dim - 1))
        flips.append(axis)
        index[axis] = slice(dim - 1 - start, dim - 1 - end, -step)
    if flips:
        x = x.flip(flips)
    return x[tuple(index)]


def onnx_expand(x: Any, shape: tuple[int, ...]) -> Any:
    """ONNX Expand: broadcast `x` with `shape` (a 1 in `shape` keeps the input's dimension)."""
    rank = max(x.dim(), len(shape))
    padded = (1,) * (rank - len(shape)) + tuple(shape)
    existing = rank - x.dim()  # leading dimensions x does not have
    sizes = [d if i < existing else (-1 if d == 1 else d) for i, d in enumerate(padded)]
    return x.expand(sizes)


def onnx_tile(x: Any, repeats: tuple[int, ...]) -> Any:
    return x.repeat(repeats)


def onnx_gather_scalar(x: Any, index: int, axis: int) -> Any:
    """ONNX Gather with a 0-d index: one slice along `axis`, that axis dropped."""
    return x.select(axis, index)


def _static_calls(module: Any) -> Any:
    """`module` (onnx2torch's fx GraphModule) with every Reshape/Squeeze/Unsqueeze/Slice/Expand/
    Tile module whose value inputs are constants (initializers) replaced by a call of the
    functions above on those values as Python ints. Modules with a value computed at run time
    stay as they are."""
    from onnx2torch.node_converters.expand import OnnxExpand
    from onnx2torch.node_converters.gather import OnnxGather
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.slice import OnnxSlice
    from onnx2torch.node_converters.squeeze import OnnxSqueezeDynamicAxes
    from onnx2torch.node_converters.tile import OnnxTile
    from onnx2torch.node_converters.unsqueeze import OnnxUnsqueezeDynamicAxes

    inline = {OnnxReshape: onnx_reshape, OnnxSqueezeDynamicAxes: onnx_squeeze, OnnxUnsqueezeDynamicAxes: onnx_unsqueeze,
              OnnxSlice: onnx_slice, OnnxExpand: onnx_expand, OnnxTile: onnx_tile}
    graph = module.graph
    changed = False
    for node in list(graph.nodes):
        if node.op != "call_module" or node.kwargs:
            continue
        submodule = module.get_submodule(node.target)
        if isinstance(submodule, OnnxGather) and len(node.args) == 2:
            # x[..., tensor(i)] reads i on the host (.item()): torch.export traces it, inductor cannot compile it
            index = _constant_value(module, node.args[1], scalar=True)
            if index is not _NOT_CONSTANT:
                with graph.inserting_before(node):
                    call = graph.call_function(onnx_gather_scalar, (node.args[0], index, submodule._axis))
                node.replace_all_uses_with(call)
                graph.erase_node(node)
                changed = True
            continue
        function = inline.get(type(submodule))
        if function is None:
            continue
        values = [_constant_value(module, arg) for arg in node.args[1:]]
        if any(v is _NOT_CONSTANT for v in values):
            continue
        if isinstance(submodule, OnnxReshape) and any(not isinstance(v, tuple) for v in values):
            continue
        arity = {onnx_slice: 4, onnx_squeeze: 1}.get(function, len(values))
        values += [None] * (arity - len(values))
        with graph.inserting_before(node):
            call = graph.call_function(function, (node.args[0], *values))
        node.replace_all_uses_with(call)
        graph.erase_node(node)
        changed = True
    if changed:
        graph.eliminate_dead_code()
        module.delete_all_unused_submodules()
        graph.lint()
        module.recompile()
    return module


_NOT_CONSTANT = object()
MAX_INLINED = 64


def _constant_value(module: Any, arg: Any, *, scalar: bool = False) -> Any:
    """A node argument as a tuple of ints when it reads a 1-D integer constant buffer (get_attr),
    or an int when `scalar` and the buffer is 0-d; None for an omitted input; else _NOT_CONSTANT."""
    if arg is None and not scalar:
        return None
    if getattr(arg, "op", None) != "get_attr":
        return _NOT_CONSTANT
    tensor = operator.attrgetter(arg.target)(module)
    # shapes, axes and bounds have one entry per dimension: anything longer is not inlined as code
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dim() != (0 if scalar else 1) \
            or tensor.numel() > MAX_INLINED:
        return _NOT_CONSTANT
    return int(tensor.item()) if scalar else tuple(int(v) for v in tensor.tolist())
