"""ReduceMean, ReduceSum, ReduceMax, ReduceProd over per-sample axes (never the batch axis 0).

Axes come from the `axes` attribute before opset 18 (ReduceSum: before 13) and from a constant
second input after; keepdims and noop_with_empty_axes as in ONNX. The input is read once in
memory order and accumulated into the output through strides that are 0 on reduced axes;
neighbouring axes that are both reduced or both kept are merged first.
"""

from __future__ import annotations

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import emits, unsupported, per_sample_shape

_AXES_INPUT_SINCE = {"ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18, "ReduceProd": 18}


def _axes(node: ir.Node, ctx: EmitContext, rank: int) -> list[int] | None:
    """Normalized axes, or None when none are given."""
    if ctx.graph.opset >= _AXES_INPUT_SINCE[node.op]:
        if len(node.inputs) < 2 or not node.inputs[1]:
            return None
        try:
            axes = np.asarray(ctx.const_value(node.inputs[1])).reshape(-1)
        except KeyError:
            raise unsupported(node, "the axes input must be a constant") from None
    else:
        axes = node.attr("axes")
        if axes is None:
            return None
    out = []
    for axis in (int(a) for a in axes):
        if not -rank <= axis < rank:
            raise unsupported(node, f"axis {axis} is out of range for rank {rank}")
        out.append(axis + rank if axis < 0 else axis)
    return sorted(set(out))


@emits("ReduceMean", "ReduceSum", "ReduceMax", "ReduceProd")
def emit_reduce(node: ir.Node, ctx: EmitContext) -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = per_sample_shape(node, ctx, "reducing")
    rank = len(shape) + 1
    axes = _axes(node, ctx, rank)
    if not axes:
        if node.attr("noop_with_empty_axes", 0):
            return f"std::memcpy({ctx.ptr(y)}, {ctx.ptr(x)}, sizeof(float) * nb * {ctx.value(x).size});"
        axes = list(range(rank))  # all axes, the batch included: refused below
    if 0 in axes:
        raise unsupported(node, f"reduction over the batch axis 0 (axes {axes}); generated C++ keeps samples independent")
    reduced = {a - 1 for a in axes}

    # Merge neighbouring axes of the same kind; drop size-1 axes (they change nothing).
    dims: list[list] = []  # [size, is_reduced]
    for axis, size in enumerate(shape):
        if size == 1:
            continue
        kind = axis in reduced
        if dims and dims[-1][1] == kind:
            dims[-1][0] *= size
        else:
            dims.append([size, kind])
    in_size = ctx.value(x).size
    out_size = ctx.value(y).size
    count = int(np.prod([shape[a] for a in reduced], dtype=np.int64))
    kept = [d for d in dims if not d[1]]
    out_strides, step = {}, 1
    for index in reversed(range(len(dims))):
        if not dims[index][1]:
            out_strides[index] = step
            step *= dims[index][0]

    if node.op == "ReduceMax":
        init, update = "-__builtin_huge_valf()", "{t} = (v > {t} || v != v) ? v : {t};"
    elif node.op == "ReduceProd":
        init, update = "1.0f", "{t} *= v;"
    else:
        init, update = "0.0f", "{t} += v;"
    loops = "".join(f"for (int64_t i{k} = 0; i{k} < {size}; ++i{k}) " for k, (size, _) in enumerate(dims))
    target = " + ".join(f"i{k} * {out_strides[k]}" if out_strides[k] != 1 else f"i{k}" for k in out_strides) or "0"
    finish = ""
    if node.op == "ReduceMean":
        finish = f"\n  for (int64_t i = 0; i < {out_size}; ++i) yn[i] /= {float(count)}f;"
    assert int(np.prod([d[0] for d in kept], dtype=np.int64)) == out_size or in_size == 0
    return f"""
const float* x = {ctx.ptr(x)};
float* y = {ctx.ptr(y)};
for (int64_t n = 0; n < nb; ++n) {{
  const float* __restrict xn = x + n * {in_size};
  float* __restrict yn = y + n * {out_size};
  for (int64_t i = 0; i < {out_size}; ++i) yn[i] = {init};
  int64_t p = 0;
  {loops}{{
    const float v = xn[p++];
    {update.format(t=f"yn[{target}]")}
  }}{finish}
}}"""
