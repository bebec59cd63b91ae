"""Gather and Slice of an activation along per-sample axes, with constant indices / bounds.

(On shape values, known but for the batch size, both are folded by the IR instead: ir.SHAPE_VALUE_OPS.)
A Slice is a strided view: the output is read from the input at start + i * step on every axis, the
offsets folded into one base and one stride per axis at generation time. Gather copies runs of
`inner` contiguous floats, one per index, from a table of indices in the code.
"""

from __future__ import annotations

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import emits, unsupported, per_sample_shape

# An end at least this large reaches the end of the batch axis for any batch a C++ int64 can count
# (torch exports x[:, ...] with INT64_MAX, tf2onnx with INT32_MAX).
WHOLE_AXIS = 2**31 - 1


def _constant_ints(node: ir.Node, ctx: EmitContext, name: str, what: str) -> np.ndarray:
    try:
        return np.asarray(ctx.const_value(name)).astype(np.int64).reshape(-1)
    except KeyError:
        raise unsupported(node, f"the {what} must be a constant") from None


@emits("Gather")
def emit_gather(node: ir.Node, ctx: EmitContext) -> str:
    data, indices = node.inputs[:2]
    y = node.outputs[0]
    value = ctx.value(data)
    if not value.batched:
        raise unsupported(node, "the indices are computed (an activation); only constant indices into an activation are supported")
    shape = tuple(value.shape)  # per sample
    rank = len(shape) + 1
    axis = int(node.attr("axis", 0))
    if not -rank <= axis < rank:
        raise unsupported(node, f"axis {axis} is out of range for rank {rank}")
    axis %= rank
    if axis == 0:
        raise unsupported(node, "gathering along the batch axis 0; generated C++ keeps samples independent")
    if ctx.value(indices).batched:
        raise unsupported(node, "the indices must be a constant")
    index_array = np.asarray(ctx.const_value(indices))
    if index_array.dtype.kind not in "iu":
        raise unsupported(node, f"indices of type {index_array.dtype}")
    dim = shape[axis - 1]
    flat = [int(i) + dim if int(i) < 0 else int(i) for i in index_array.reshape(-1)]
    if any(not 0 <= i < dim for i in flat):
        raise unsupported(node, f"an index is out of range for an axis of {dim}")
    outer = int(np.prod(shape[:axis - 1], dtype=np.int64))
    inner = int(np.prod(shape[axis:], dtype=np.int64))
    count = len(flat)
    expected = (*shape[:axis - 1], *index_array.shape, *shape[axis:])
    if tuple(ctx.value(y).shape) != expected:
        raise unsupported(node, f"computes per-sample shape {expected}, but the graph says {ctx.value(y).shape}")
    size, in_size = ctx.value(y).size, value.size
    if size == 0:
        return "// empty output: nothing to gather"
    table = ", ".join(map(str, flat))
    copy = (f"yn[(o * {count} + t) * {inner}] = xn[(o * {dim} + kIndex[t]) * {inner}];" if inner == 1 else
            f"std::memcpy(yn + (o * {count} + t) * {inner}, xn + (o * {dim} + kIndex[t]) * {inner}, sizeof(float) * {inner});")
    return f"""
static constexpr int64_t kIndex[{count}] = {{{table}}};
const float* x = {ctx.ptr(data)};
float* y = {ctx.ptr(y)};
for (int64_t n = 0; n < nb; ++n) {{
  const float* __restrict xn = x + n * {in_size};
  float* __restrict yn = y + n * {size};
  for (int64_t o = 0; o < {outer}; ++o)
    for (int64_t t = 0; t < {count}; ++t) {copy}
}}"""


def _axis_range(start: int, end: int, step: int, dim: int) -> tuple[int, int]:
    """(first index, count) that ONNX Slice picks on an axis of `dim` (negative bounds count from the
    end, then clamp: to [0, dim] with a positive step, to [0, dim - 1] / [-1, dim - 1] with a negative one)."""
    if dim == 0:
        return 0, 0
    start, end = start + dim if start < 0 else start, end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        count = max(0, -(-(end - start) // step))
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
        count = max(0, -(-(start - end) // -step))
    return start, count


@emits("Slice")
def emit_slice(node: ir.Node, ctx: EmitContext) -> str:
    data, y = node.inputs[0], node.outputs[0]
    shape = per_sample_shape(node, ctx, "slicing")
    rank = len(shape) + 1
    if ctx.graph.opset < 10:  # starts, ends and axes were attributes
        starts = np.asarray(node.attr("starts", []), np.int64)
        ends = np.asarray(node.attr("ends", []), np.int64)
        axes = np.asarray(node.attr("axes", range(len(starts))), np.int64)
        steps = np.ones(len(starts), np.int64)
    else:
        given = node.inputs + [""] * (5 - len(node.inputs))
        starts = _constant_ints(node, ctx, given[1], "starts")
        ends = _constant_ints(node, ctx, given[2], "ends")
        axes = _constant_ints(node, ctx, given[3], "axes") if given[3] else np.arange(len(starts), dtype=np.int64)
        steps = _constant_ints(node, ctx, given[4], "steps") if given[4] else np.ones(len(starts), np.int64)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise unsupported(node, "starts, ends, axes and steps differ in length")
    first = [0] * len(shape)
    step_of = [1] * len(shape)
    count = list(shape)
    seen = set()
    for start, end, axis, step in zip(starts.tolist(), ends.tolist(), axes.tolist(), steps.tolist()):
        if not -rank <= axis < rank or axis % rank in seen:
            raise unsupported(node, f"axis {axis} is out of range or repeated")
        axis %= rank
        seen.add(axis)
        if step == 0:
            raise unsupported(node, "a step of 0")
        if axis == 0:  # only the whole batch, in order, whatever its size
            if not (start == 0 and step == 1 and end >= WHOLE_AXIS):
                raise unsupported(node, f"slicing the batch axis 0 ({start}:{end}:{step}); generated C++ keeps every sample")
            continue
        first[axis - 1], count[axis - 1] = _axis_range(start, end, step, shape[axis - 1])
        step_of[axis - 1] = step
    if tuple(count) != tuple(ctx.value(y).shape):
        raise unsupported(node, f"computes per-sample shape {tuple(count)}, but the graph says {ctx.value(y).shape}")
    size = ctx.value(y).size
    if size == 0:
        return "// empty output: nothing to copy"
    strides = [int(np.prod(shape[d + 1:], dtype=np.int64)) for d in range(len(shape))]
    base = sum(f * s for f, s in zip(first, strides))
    loops = "".join(f"for (int64_t i{d} = 0; i{d} < {c}; ++i{d}) " for d, c in enumerate(count))
    source = " + ".join([str(base)] + [f"i{d} * {step_of[d] * strides[d]}" for d in range(len(shape))])
    return f"""
const float* x = {ctx.ptr(data)};
float* y = {ctx.ptr(y)};
for (int64_t n = 0; n < nb; ++n) {{
  const float* __restrict xn = x + n * {int(np.prod(shape, dtype=np.int64))};
  float* __restrict yn = y + n * {size};
  int64_t o = 0;
  {loops}yn[o++] = xn[{source}];
}}"""
