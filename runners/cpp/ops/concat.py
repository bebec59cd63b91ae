"""Concat along a per-sample axis. Inputs are batched tensors or constants; a constant (with a
leading axis of 1, or one axis fewer than the output) is the same for every sample.

Per sample, the output is `outer` rows; row o is the inputs' row o side by side, each a
contiguous chunk of prod(shape[axis:]) floats, so the copy is one memcpy per (row, input).
"""

from __future__ import annotations

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import emits, unsupported


@emits("Concat")
def emit_concat(node: ir.Node, ctx: EmitContext) -> str:
    y = node.outputs[0]
    out_shape = ctx.value(y).shape  # per sample
    rank = len(out_shape) + 1
    if node.attr("axis") is None:
        raise unsupported(node, "the axis attribute is required")
    axis = int(node.attr("axis"))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise unsupported(node, f"axis {node.attr('axis')} is out of range for rank {rank}")
    if axis == 0:
        raise unsupported(node, "concatenation along the batch axis 0; generated C++ keeps samples independent")
    sample_axis = axis - 1
    outer = int(np.prod(out_shape[:sample_axis], dtype=np.int64))
    row = int(np.prod(out_shape[sample_axis:], dtype=np.int64))
    parts = []  # (C pointer, per-sample stride (0 for constants), chunk floats, offset in the row)
    offset = 0
    for position, name in enumerate(node.inputs):
        if not name:
            continue
        value = ctx.value(name)
        if value.batched:
            shape = tuple(value.shape)
            pointer, stride = ctx.ptr(name), value.size
        else:
            array = np.asarray(value.const, dtype=np.float32)
            if array.ndim == rank:
                if array.shape[0] != 1:
                    raise unsupported(node, f"constant input {name} of shape {array.shape} would concatenate over the batch")
                array = array.reshape(array.shape[1:])
            elif array.ndim != rank - 1:
                raise unsupported(node, f"constant input {name} of shape {array.shape} does not match the output rank {rank}")
            shape = tuple(array.shape)
            pointer, stride = None, 0
        if len(shape) != len(out_shape) or any(a != b for i, (a, b) in enumerate(zip(shape, out_shape)) if i != sample_axis):
            raise unsupported(node, f"input {name} of per-sample shape {shape} does not fit the output {tuple(out_shape)} along axis {axis}")
        chunk = int(np.prod(shape[sample_axis:], dtype=np.int64))
        if chunk == 0 or outer == 0:
            continue
        if pointer is None:
            pointer = ctx.const_array(array, f"{node.name}_{position}")
        parts.append((pointer, stride, chunk, offset))
        offset += chunk
    if offset != row and outer:
        raise unsupported(node, f"the inputs fill {offset} of {row} floats per row")
    size = ctx.value(y).size
    lines = []
    for pointer, stride, chunk, start in parts:
        source = f"{pointer} + n * {stride}" if stride else pointer
        if outer == 1:
            lines.append(f"  std::memcpy(yn + {start}, {source}, sizeof(float) * {chunk});")
        else:
            lines.append(f"  for (int64_t o = 0; o < {outer}; ++o) "
                         f"std::memcpy(yn + o * {row} + {start}, {source} + o * {chunk}, sizeof(float) * {chunk});")
    body = "\n".join(lines)
    return f"""
float* y = {ctx.ptr(y)};
for (int64_t n = 0; n < nb; ++n) {{
  float* yn = y + n * {size};
{body}
}}"""
